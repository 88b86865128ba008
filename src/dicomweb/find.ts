import { pages, QIDO_MAX_LIMIT, type QidoPort, type QidoQuery, type SearchEvent } from "./search.ts";

export type SearchLevel = keyof typeof QIDO_MAX_LIMIT;

const KEY: Record<SearchLevel, string> = { studies: "0020000D", series: "0020000E", instances: "00080018" };

export interface FindOptions {
  readonly level: SearchLevel;
  readonly query: QidoQuery;
  /** Each request's `limit` (capped at the Healthcare API's maximum for the level). */
  readonly pageSize: number;
  /** At most this many results. */
  readonly limit?: number;
  readonly onEvent?: (e: SearchEvent) => void;
  readonly signal?: AbortSignal;
}

/**
 * `dicomweb search`: every page of one QIDO-RS search (a short page is not trusted to be the
 * last; paging ends at an empty page), rows as served, each result once (by its level's UID:
 * offset paging over a store that changes can repeat a row), at most `limit`.
 */
export async function* findRows(port: QidoPort, o: FindOptions): AsyncGenerator<unknown> {
  const seen = new Set<string>();
  let n = 0;
  if (o.limit !== undefined && o.limit <= 0) return;
  const pageSize = Math.min(o.pageSize, QIDO_MAX_LIMIT[o.level], o.limit ?? Number.POSITIVE_INFINITY);
  for await (const rows of pages(port, o.level, o.query, pageSize, o)) {
    for (const row of rows) {
      const uid = (row as Record<string, { Value?: unknown[] } | undefined> | null)?.[KEY[o.level]]?.Value?.[0];
      if (typeof uid === "string") {
        if (seen.has(uid)) continue;
        seen.add(uid);
      }
      yield row;
      if (o.limit !== undefined && ++n >= o.limit) return;
    }
  }
}
