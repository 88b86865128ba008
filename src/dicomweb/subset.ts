import { UsageError } from "../core/errors.ts";
import { qidoQuery, type QidoFilter } from "./query.ts";
import {
  checkUid,
  pages,
  QIDO_MAX_LIMIT,
  refOf,
  type ListOptions,
  type Listed,
  type QidoPort,
  type QidoQuery,
  UID_FIELDS,
} from "./search.ts";

/** A part of a store to pull: whole studies, series (with or without their study), single instances. */
export interface Scope {
  readonly study?: string;
  readonly series?: string;
  readonly instance?: string;
}

/** `pull --study/--series/--uids/--filter`: the scopes (a union) and the filters each must also match. */
export interface Subset {
  readonly scopes: readonly Scope[];
  readonly filters: readonly QidoFilter[];
}

const TAG = { series: "0020000E", instance: "00080018" } as const;

function uid(what: string, value: string, where: string): string {
  const problem = checkUid(value);
  if (problem !== undefined) throw new UsageError(`${where}: the ${what} UID "${value.slice(0, 80)}" is ${problem}`);
  return value;
}

/** `--study`/`--series` values as scopes (UIDs checked: they become path segments). */
export function scopesOf(studies: readonly string[], series: readonly string[]): Scope[] {
  return [
    ...studies.map((s) => ({ study: uid("study", s, "--study") })),
    ...series.map((s) => ({ series: uid("series", s, "--series") })),
  ];
}

/**
 * A `--uids FILE`: one entry per line, `#` starts a comment, blank lines skipped. An entry is a
 * Study Instance UID, or a path `studies/S`, `studies/S/series/SE` or
 * `studies/S/series/SE/instances/I` (a leading `/` is ignored).
 */
export function parseUidsFile(text: string, file: string): Scope[] {
  const out: Scope[] = [];
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") continue;
    const where = `${file}:${i + 1}`;
    const parts = line.replace(/^\/+|\/+$/g, "").split("/");
    if (parts.length === 1) {
      out.push({ study: uid("study", parts[0]!, where) });
      continue;
    }
    const ok =
      parts[0] === "studies" &&
      (parts.length === 2 ||
        (parts.length === 4 && parts[2] === "series") ||
        (parts.length === 6 && parts[2] === "series" && parts[4] === "instances"));
    if (!ok)
      throw new UsageError(`${where}: "${line.slice(0, 120)}" is not a UID or studies/S[/series/SE[/instances/I]]`);
    out.push({
      study: uid("study", parts[1]!, where),
      ...(parts.length >= 4 ? { series: uid("series", parts[3]!, where) } : {}),
      ...(parts.length === 6 ? { instance: uid("SOP instance", parts[5]!, where) } : {}),
    });
  }
  return out;
}

/** The QIDO search (path relative to the service base, and query) that lists one scope's instances. */
export function scopeSearch(scope: Scope, filters: readonly QidoFilter[]): { path: string; query: QidoQuery } {
  const query: Record<string, string | number | readonly string[]> = {
    ...qidoQuery(filters),
    includefield: ["0020000D", TAG.series, TAG.instance],
  };
  let path = "instances";
  if (scope.study !== undefined) {
    path =
      scope.series === undefined
        ? `studies/${scope.study}/instances`
        : `studies/${scope.study}/series/${scope.series}/instances`;
  } else if (scope.series !== undefined) query[TAG.series] = scope.series;
  if (scope.instance !== undefined) query[TAG.instance] = scope.instance;
  return { path, query };
}

function label(scope: Scope): string {
  if (scope.study === undefined) return scope.series === undefined ? "instances" : `series ${scope.series}`;
  let s = `studies/${scope.study}`;
  if (scope.series !== undefined) s += `/series/${scope.series}`;
  if (scope.instance !== undefined) s += `/instances/${scope.instance}`;
  return s;
}

/**
 * Lists the instances of a subset once each, every page of every scope's search (a short page is
 * not trusted to be the last). A scope the server lists nothing for is reported as a refusal, so
 * a mistyped UID fails the run instead of passing as "nothing to do".
 */
export async function* listSubset(port: QidoPort, subset: Subset, o: ListOptions): AsyncGenerator<Listed> {
  const scopes = subset.scopes.length === 0 ? [{}] : subset.scopes;
  const seen = new Set<string>();
  for (const scope of scopes) {
    const { path, query } = scopeSearch(scope, subset.filters);
    let found = 0;
    for await (const rows of pages(port, path, query, Math.min(o.pageSize, QIDO_MAX_LIMIT.instances), o, UID_FIELDS)) {
      for (const row of rows) {
        const listed = refOf(row, scope.study === undefined ? {} : { study: scope.study });
        // A server that ignores a match key must not widen the subset.
        if (listed.ok && scope.series !== undefined && listed.ref.series !== scope.series) continue;
        if (listed.ok && scope.instance !== undefined && listed.ref.instance !== scope.instance) continue;
        found++;
        const key = listed.ok ? listed.ref.instance : listed.name;
        if (seen.has(key)) continue;
        seen.add(key);
        yield listed;
      }
    }
    if (found === 0 && subset.scopes.length > 0)
      yield { ok: false, name: label(scope), reason: "the server lists no instances for it (check the UID)" };
  }
}
