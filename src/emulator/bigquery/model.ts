import { createHash } from "node:crypto";
import { ApiError } from "../http-util.ts";
import { rowBytes, type Row, type TableField } from "./table-schema.ts";

/** A dataset access entry as the API returns it (legacy role names for the data roles). */
export interface AccessEntry {
  role?: string;
  userByEmail?: string;
  groupByEmail?: string;
  domain?: string;
  specialGroup?: string;
  iamMember?: string;
  view?: unknown;
  routine?: unknown;
  dataset?: unknown;
  condition?: unknown;
}

export interface DatasetRecord {
  readonly projectId: string;
  readonly datasetId: string;
  location: string;
  access: AccessEntry[];
  labels?: Record<string, string>;
  description?: string;
  friendlyName?: string;
  defaultTableExpirationMs?: string;
  readonly creationTime: number;
  lastModifiedTime: number;
  etag: string;
  readonly tables: Map<string, TableRecord>;
}

export interface TableRecord {
  readonly tableId: string;
  schema: TableField[];
  rows: Row[];
  numBytes: number;
  readonly creationTime: number;
  lastModifiedTime: number;
  etag: string;
  description?: string;
  labels?: Record<string, string>;
}

/** IAM role names that datasets.insert/patch accept for the legacy access roles. */
const LEGACY_ROLES: Record<string, string> = {
  "roles/bigquery.dataOwner": "OWNER",
  "roles/bigquery.dataEditor": "WRITER",
  "roles/bigquery.dataViewer": "READER",
};
const ENTITY_KEYS = [
  "userByEmail",
  "groupByEmail",
  "domain",
  "specialGroup",
  "iamMember",
  "view",
  "routine",
  "dataset",
];
const SPECIAL_GROUPS = new Set(["projectOwners", "projectWriters", "projectReaders", "allAuthenticatedUsers"]);

/** The default access of a dataset created without one (what the API documents). */
export function defaultAccess(): AccessEntry[] {
  return [
    { role: "WRITER", specialGroup: "projectWriters" },
    { role: "OWNER", specialGroup: "projectOwners" },
    { role: "READER", specialGroup: "projectReaders" },
  ];
}

/** Validates and normalises access entries: IAM data roles come back as OWNER/WRITER/READER. */
export function normalizeAccess(input: unknown): AccessEntry[] {
  if (!Array.isArray(input)) throw invalid("access must be a list of access entries");
  return input.map((raw, i) => {
    if (typeof raw !== "object" || raw === null) throw invalid(`access[${i}] must be an object`);
    const e = { ...(raw as AccessEntry) };
    const entities = ENTITY_KEYS.filter((k) => (e as Record<string, unknown>)[k] !== undefined);
    if (entities.length !== 1)
      throw invalid(
        `Invalid dataset access entry access[${i}]: exactly one of ${ENTITY_KEYS.join(", ")} must be set (found ${entities.length})`,
      );
    const kind = entities[0]!;
    if (kind === "specialGroup" && !SPECIAL_GROUPS.has(String(e.specialGroup)))
      throw invalid(`Invalid special group "${String(e.specialGroup)}" in access[${i}]`);
    if ((kind === "userByEmail" || kind === "groupByEmail") && !/^[^@\s]+@[^@\s]+$/.test(String(e[kind])))
      throw invalid(`Invalid email "${String(e[kind])}" in access[${i}].${kind}`);
    if (kind === "iamMember" && !/^[a-zA-Z]+:.+/.test(String(e.iamMember)))
      throw invalid(`Invalid IAM member "${String(e.iamMember)}" in access[${i}]`);
    if (!["view", "routine", "dataset"].includes(kind)) {
      if (typeof e.role !== "string" || e.role === "") throw invalid(`access[${i}]: a role is required`);
      const role = LEGACY_ROLES[e.role] ?? e.role;
      if (!["OWNER", "WRITER", "READER"].includes(role) && !role.startsWith("roles/"))
        throw invalid(`Invalid role "${e.role}" in access[${i}]`);
      e.role = role;
    }
    return e;
  });
}

/** The datasets and tables of the emulated BigQuery, in memory. */
export class BigQueryModel {
  readonly #datasets = new Map<string, DatasetRecord>();
  #seq = 0;
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  now(): number {
    return this.#now();
  }

  /** A fresh etag (base64, like the API's); distinct for every write. */
  etag(): string {
    return createHash("sha256").update(`${++this.#seq}:${this.#now()}`).digest("base64").slice(0, 22).concat("==");
  }

  /** Projects that hold at least one dataset, sorted. */
  projectIds(): string[] {
    return [...new Set([...this.#datasets.values()].map((d) => d.projectId))].sort();
  }

  datasets(projectId: string): DatasetRecord[] {
    return [...this.#datasets.values()]
      .filter((d) => d.projectId === projectId)
      .sort((a, b) => (a.datasetId < b.datasetId ? -1 : a.datasetId > b.datasetId ? 1 : 0));
  }

  dataset(projectId: string, datasetId: string): DatasetRecord | undefined {
    return this.#datasets.get(`${projectId}:${datasetId}`);
  }

  /** The dataset or the API's 404. */
  requireDataset(projectId: string, datasetId: string): DatasetRecord {
    const d = this.dataset(projectId, datasetId);
    if (d === undefined) throw notFound(`Not found: Dataset ${projectId}:${datasetId}`);
    return d;
  }

  /** Creates a dataset; undefined when it exists. */
  createDataset(
    init: Omit<DatasetRecord, "creationTime" | "lastModifiedTime" | "etag" | "tables">,
  ): DatasetRecord | undefined {
    const key = `${init.projectId}:${init.datasetId}`;
    if (this.#datasets.has(key)) return undefined;
    const t = this.#now();
    const d: DatasetRecord = { ...init, creationTime: t, lastModifiedTime: t, etag: this.etag(), tables: new Map() };
    this.#datasets.set(key, d);
    return d;
  }

  deleteDataset(projectId: string, datasetId: string, deleteContents: boolean): void {
    const d = this.requireDataset(projectId, datasetId);
    if (d.tables.size > 0 && !deleteContents)
      throw new ApiError(400, "resourceInUse", `Dataset ${projectId}:${datasetId} is still in use`, {
        rpcStatus: "FAILED_PRECONDITION",
      });
    this.#datasets.delete(`${projectId}:${datasetId}`);
  }

  touchDataset(d: DatasetRecord): void {
    d.lastModifiedTime = this.#now();
    d.etag = this.etag();
  }

  table(projectId: string, datasetId: string, tableId: string): TableRecord | undefined {
    return this.dataset(projectId, datasetId)?.tables.get(tableId);
  }

  requireTable(projectId: string, datasetId: string, tableId: string): TableRecord {
    const d = this.requireDataset(projectId, datasetId);
    const t = d.tables.get(tableId);
    if (t === undefined) throw notFound(`Not found: Table ${projectId}:${datasetId}.${tableId}`);
    return t;
  }

  /** Creates or replaces a table's contents (a load job's WRITE_TRUNCATE; creation when missing). */
  writeTable(d: DatasetRecord, tableId: string, schema: TableField[], rows: Row[], append: boolean): TableRecord {
    const t = this.#now();
    const existing = d.tables.get(tableId);
    if (existing !== undefined && append) {
      existing.schema = schema;
      existing.rows.push(...rows);
      existing.numBytes += rows.reduce((n, r) => n + rowBytes(schema, r), 0);
      existing.lastModifiedTime = t;
      existing.etag = this.etag();
      return existing;
    }
    const rec: TableRecord = {
      tableId,
      schema,
      rows,
      numBytes: rows.reduce((n, r) => n + rowBytes(schema, r), 0),
      creationTime: existing?.creationTime ?? t,
      lastModifiedTime: t,
      etag: this.etag(),
    };
    d.tables.set(tableId, rec);
    return rec;
  }
}

export function notFound(message: string): ApiError {
  return new ApiError(404, "notFound", message, { rpcStatus: "NOT_FOUND" });
}

export function invalid(message: string): ApiError {
  return new ApiError(400, "invalid", message, { rpcStatus: "INVALID_ARGUMENT" });
}
