import { HttpError } from "../core/errors.ts";

/**
 * QIDO-RS listing of every instance of a DICOMweb service (PS3.18 §10.6), paged with
 * `limit`/`offset`, complete even where servers cap what a search may return:
 *
 * 1. `GET /instances` page after page until an empty page (a short page is not trusted to be the
 *    last: the Healthcare API truncates silently at its maxima, other servers at their own);
 * 2. `GET /studies` with NumberOfStudyRelatedInstances, and for every study with fewer instances
 *    listed than it says it holds, `GET /studies/{S}/instances` — the per-study fallback that
 *    also takes over when the instance-level search refuses a deep offset.
 *
 * Pure over a `QidoPort`; duplicates (offset paging over a store that changes) are dropped.
 */

export interface InstanceRef {
  readonly study: string;
  readonly series: string;
  readonly instance: string;
}

export type QidoQuery = Readonly<Record<string, string | number | readonly string[]>>;

export interface QidoPort {
  /**
   * A QIDO-RS search relative to the service base; a 204 is an empty array. `keep`: the attributes
   * the caller reads of each row, which is all a port need keep of it (json-rows.ts).
   */
  search(path: string, query: QidoQuery, signal?: AbortSignal, keep?: readonly string[]): Promise<unknown[]>;
}

/** The Healthcare API's maximum `limit` per level; other servers get the same bound. */
export const QIDO_MAX_LIMIT = { studies: 5000, series: 5000, instances: 50_000 } as const;

const TAG = { study: "0020000D", series: "0020000E", instance: "00080018", studyInstances: "00201208" } as const;
/** What `refOf` reads of an instance row. */
export const UID_FIELDS: readonly string[] = [TAG.study, TAG.series, TAG.instance];
/** What the study-level listing reads of a study row (asked for and kept: one list for both). */
const STUDY_FIELDS: readonly string[] = [TAG.study, TAG.studyInstances];

export type SearchEvent =
  | { readonly kind: "dicomweb.search.page"; readonly path: string; readonly offset: number; readonly rows: number }
  | { readonly kind: "dicomweb.search.capped"; readonly path: string; readonly limit: number; readonly rows: number }
  | { readonly kind: "dicomweb.search.fallback"; readonly reason: string; readonly studies: number };

export type Listed =
  | { readonly ok: true; readonly ref: InstanceRef }
  | { readonly ok: false; readonly name: string; readonly reason: string };

export interface ListOptions {
  readonly pageSize: number;
  /** `instances`: the instance-level search only; `studies`: per-study searches only; `auto`: both, as above. */
  readonly strategy?: "auto" | "instances" | "studies";
  readonly onEvent?: (e: SearchEvent) => void;
  readonly signal?: AbortSignal;
}

/** A UID usable as one path segment: digits and dots, at most 64 characters (PS3.5 §9.1). */
export function checkUid(uid: unknown): string | undefined {
  if (typeof uid !== "string") return "missing";
  if (uid.length === 0 || uid.length > 64) return `${uid.length} characters (a UID has 1 to 64)`;
  if (!/^[0-9]+(\.[0-9]+)*$/.test(uid)) return "not made of digits and dots";
  return undefined;
}

function value(row: unknown, tag: string): unknown {
  const attr = (row as Record<string, { Value?: unknown[] } | undefined> | null)?.[tag];
  return attr?.Value?.[0];
}

/** The three UIDs of a QIDO instance row, each checked as a path segment. */
export function refOf(row: unknown, scope: { study?: string } = {}): Listed {
  const study = value(row, TAG.study) ?? scope.study;
  const series = value(row, TAG.series);
  const instance = value(row, TAG.instance);
  const name = `${String(study)}/${String(series)}/${String(instance)}`.slice(0, 300);
  for (const [what, uid] of [
    ["StudyInstanceUID", study],
    ["SeriesInstanceUID", series],
    ["SOPInstanceUID", instance],
  ] as const) {
    const problem = checkUid(uid);
    if (problem !== undefined) return { ok: false, name, reason: `${what} is ${problem}` };
  }
  return { ok: true, ref: { study: study as string, series: series as string, instance: instance as string } };
}

/**
 * Pages one search until an empty page; yields each page's rows. Shared by `pull` (its listing),
 * `pull`'s subsets (`subset.ts`) and `dicomweb search`.
 */
export async function* pages(
  port: QidoPort,
  path: string,
  query: QidoQuery,
  limit: number,
  o: Pick<ListOptions, "onEvent" | "signal">,
  keep?: readonly string[],
): AsyncGenerator<unknown[]> {
  let offset = 0;
  let capped = false;
  let previousFirst: string | undefined;
  for (;;) {
    const rows = await port.search(path, { ...query, limit, offset }, o.signal, keep);
    if (!Array.isArray(rows))
      throw new HttpError({ status: 200, method: "GET", url: path, message: "QIDO-RS answer is not a JSON array" });
    o.onEvent?.({ kind: "dicomweb.search.page", path, offset, rows: rows.length });
    if (rows.length === 0) return;
    // A server that ignores `offset` returns the same page again: stop instead of looping.
    const first = JSON.stringify(rows[0]);
    if (first === previousFirst) return;
    previousFirst = first;
    if (rows.length < limit && !capped) {
      // Either the last page or a silent cap: the next (cheap) request tells.
      capped = true;
      if (offset > 0 || rows.length !== limit)
        o.onEvent?.({ kind: "dicomweb.search.capped", path, limit, rows: rows.length });
    }
    yield rows;
    offset += rows.length;
  }
}

/** Lists every instance once, as refs (or refusals for UIDs that cannot be file names). */
export async function* listInstances(port: QidoPort, o: ListOptions): AsyncGenerator<Listed> {
  const strategy = o.strategy ?? "auto";
  const seen = new Set<string>();
  const perStudy = new Map<string, number>();
  const emit = function* (rows: unknown[], scope: { study?: string }): Generator<Listed> {
    for (const row of rows) {
      const listed = refOf(row, scope);
      const key = listed.ok ? listed.ref.instance : listed.name;
      if (seen.has(key)) continue;
      seen.add(key);
      if (listed.ok) perStudy.set(listed.ref.study, (perStudy.get(listed.ref.study) ?? 0) + 1);
      yield listed;
    }
  };
  let instanceLevelFailed: string | undefined;
  if (strategy !== "studies") {
    try {
      for await (const rows of pages(
        port,
        "instances",
        { includefield: UID_FIELDS },
        Math.min(o.pageSize, QIDO_MAX_LIMIT.instances),
        o,
        UID_FIELDS,
      )) {
        yield* emit(rows, {});
      }
    } catch (err) {
      // A deep offset refused (400/413/422): finish with per-study searches, unless asked not to.
      if (
        !(err instanceof HttpError) ||
        ![400, 413, 422].includes(err.status) ||
        seen.size === 0 ||
        strategy === "instances"
      )
        throw err;
      instanceLevelFailed = `the instance-level search stopped at offset ${seen.size}: ${err.message}`;
    }
    if (strategy === "instances") return;
  }
  // Study level: the count each study says it holds, and per-study searches where it is not met.
  let fallback = 0;
  for await (const rows of pages(
    port,
    "studies",
    { includefield: STUDY_FIELDS },
    Math.min(o.pageSize, QIDO_MAX_LIMIT.studies),
    o,
    STUDY_FIELDS,
  )) {
    for (const row of rows) {
      const study = value(row, TAG.study);
      if (checkUid(study) !== undefined) {
        yield {
          ok: false,
          name: String(study).slice(0, 300),
          reason: `a study's StudyInstanceUID is ${checkUid(study)}`,
        };
        continue;
      }
      const s = study as string;
      const count = Number(value(row, TAG.studyInstances));
      const listed = perStudy.get(s) ?? 0;
      const complete =
        strategy === "auto" && instanceLevelFailed === undefined
          ? !(Number.isFinite(count) && count > listed)
          : Number.isFinite(count) && count > 0 && count <= listed;
      if (complete) continue;
      if (fallback++ === 0 && strategy === "auto") {
        o.onEvent?.({
          kind: "dicomweb.search.fallback",
          reason:
            instanceLevelFailed ?? `study ${s} holds ${count} instances but the instance-level search listed ${listed}`,
          studies: 1,
        });
      }
      for await (const inst of pages(
        port,
        `studies/${s}/instances`,
        { includefield: UID_FIELDS },
        Math.min(o.pageSize, QIDO_MAX_LIMIT.instances),
        o,
        UID_FIELDS,
      )) {
        yield* emit(inst, { study: s });
      }
    }
  }
}
