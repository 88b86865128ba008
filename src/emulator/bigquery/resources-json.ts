import type { DatasetRecord, TableRecord } from "./model.ts";

/** The REST JSON of datasets and tables (int64 as strings, times in epoch milliseconds). */

export function datasetJson(d: DatasetRecord, root: string): Record<string, unknown> {
  return {
    kind: "bigquery#dataset",
    etag: d.etag,
    id: `${d.projectId}:${d.datasetId}`,
    selfLink: `${root}/projects/${d.projectId}/datasets/${d.datasetId}`,
    datasetReference: { datasetId: d.datasetId, projectId: d.projectId },
    ...(d.friendlyName === undefined ? {} : { friendlyName: d.friendlyName }),
    ...(d.description === undefined ? {} : { description: d.description }),
    ...(d.defaultTableExpirationMs === undefined ? {} : { defaultTableExpirationMs: d.defaultTableExpirationMs }),
    ...(d.labels === undefined ? {} : { labels: d.labels }),
    access: d.access,
    creationTime: String(d.creationTime),
    lastModifiedTime: String(d.lastModifiedTime),
    location: d.location,
    type: "DEFAULT",
  };
}

export function datasetListItem(d: DatasetRecord): Record<string, unknown> {
  return {
    kind: "bigquery#dataset",
    id: `${d.projectId}:${d.datasetId}`,
    datasetReference: { datasetId: d.datasetId, projectId: d.projectId },
    ...(d.labels === undefined ? {} : { labels: d.labels }),
    location: d.location,
  };
}

export function tableJson(d: DatasetRecord, t: TableRecord, root: string): Record<string, unknown> {
  return {
    kind: "bigquery#table",
    etag: t.etag,
    id: `${d.projectId}:${d.datasetId}.${t.tableId}`,
    selfLink: `${root}/projects/${d.projectId}/datasets/${d.datasetId}/tables/${t.tableId}`,
    tableReference: { projectId: d.projectId, datasetId: d.datasetId, tableId: t.tableId },
    ...(t.description === undefined ? {} : { description: t.description }),
    ...(t.labels === undefined ? {} : { labels: t.labels }),
    schema: { fields: t.schema },
    numBytes: String(t.numBytes),
    numLongTermBytes: "0",
    numRows: String(t.rows.length),
    creationTime: String(t.creationTime),
    lastModifiedTime: String(t.lastModifiedTime),
    type: "TABLE",
    location: d.location,
    numTotalLogicalBytes: String(t.numBytes),
    numActiveLogicalBytes: String(t.numBytes),
    numLongTermLogicalBytes: "0",
  };
}

export function tableListItem(d: DatasetRecord, t: TableRecord): Record<string, unknown> {
  return {
    kind: "bigquery#table",
    id: `${d.projectId}:${d.datasetId}.${t.tableId}`,
    tableReference: { projectId: d.projectId, datasetId: d.datasetId, tableId: t.tableId },
    ...(t.labels === undefined ? {} : { labels: t.labels }),
    type: "TABLE",
    creationTime: String(t.creationTime),
  };
}

/** An opaque page token for a row/item offset, and back (undefined when malformed). */
export function pageToken(offset: number): string {
  return Buffer.from(`hcexport:${offset}`).toString("base64url");
}
export function pageOffset(token: string): number | undefined {
  const m = /^hcexport:(\d+)$/.exec(Buffer.from(token, "base64url").toString("utf8"));
  return m === null ? undefined : Number(m[1]);
}
