import { SOP_CLASS_SECONDARY_CAPTURE } from "../dataset/instances.ts";
import { ApiError } from "../http-util.ts";
import type { StoreInstance } from "./model.ts";

export type QidoLevel = "studies" | "series" | "instances";

/** Default and maximum `limit` per level, as the Healthcare API documents them. */
export const QIDO_LIMITS: Record<QidoLevel, { default: number; max: number }> = {
  studies: { default: 100, max: 5000 },
  series: { default: 1000, max: 5000 },
  instances: { default: 1000, max: 50_000 },
};

/** Keywords the emulator knows, and their tags. */
export const KEYWORDS: Readonly<Record<string, string>> = {
  SOPClassUID: "00080016",
  SOPInstanceUID: "00080018",
  StudyDate: "00080020",
  StudyTime: "00080030",
  AccessionNumber: "00080050",
  Modality: "00080060",
  ReferringPhysicianName: "00080090",
  SeriesDescription: "0008103E",
  PatientName: "00100010",
  PatientID: "00100020",
  PatientBirthDate: "00100030",
  PatientSex: "00100040",
  PatientAge: "00101010",
  BodyPartExamined: "00180015",
  ViewPosition: "00185101",
  StudyInstanceUID: "0020000D",
  SeriesInstanceUID: "0020000E",
  StudyID: "00200010",
  SeriesNumber: "00200011",
  InstanceNumber: "00200013",
  NumberOfStudyRelatedSeries: "00201206",
  NumberOfStudyRelatedInstances: "00201208",
  NumberOfSeriesRelatedInstances: "00201209",
  Rows: "00280010",
  Columns: "00280011",
  BitsAllocated: "00280100",
};
const CONTROL_PARAMS = new Set(["limit", "offset", "includefield", "fuzzymatching"]);

/** One attribute in the DICOM JSON model (PS3.18 F.2). */
export interface DicomJsonAttribute {
  vr: string;
  Value?: unknown[];
}
export type DicomJson = Record<string, DicomJsonAttribute>;

/** Every attribute of an instance that QIDO can return or match on (no Pixel Data). */
export function instanceAttributes(i: StoreInstance): DicomJson {
  if ("kind" in i) return { ...i.attributes };
  return {
    "00080016": { vr: "UI", Value: [SOP_CLASS_SECONDARY_CAPTURE] },
    "00080018": { vr: "UI", Value: [i.sopInstanceUid] },
    "00080020": { vr: "DA", Value: ["19010101"] },
    "00080030": { vr: "TM", Value: ["000000.00"] },
    "00080050": { vr: "SH" },
    "00080060": { vr: "CS", Value: ["CR"] },
    "00080090": { vr: "PN" },
    "0008103E": { vr: "LO", Value: [`view: ${i.viewPosition}`] },
    "00100010": { vr: "PN", Value: [{ Alphabetic: i.patientId }] },
    "00100020": { vr: "LO", Value: [i.patientId] },
    "00100030": { vr: "DA" },
    "00100040": { vr: "CS", Value: [i.patientSex] },
    "00101010": { vr: "AS", Value: [`${String(i.patientAge).padStart(3, "0")}Y`] },
    "00180015": { vr: "CS", Value: ["CHEST"] },
    "00185101": { vr: "CS", Value: [i.viewPosition] },
    "0020000D": { vr: "UI", Value: [i.studyUid] },
    "0020000E": { vr: "UI", Value: [i.seriesUid] },
    "00200010": { vr: "SH" },
    "00200011": { vr: "IS", Value: [1] },
    "00200013": { vr: "IS", Value: [1] },
    "00280010": { vr: "US", Value: [i.side] },
    "00280011": { vr: "US", Value: [i.side] },
    "00280100": { vr: "US", Value: [8] },
  };
}

/** Attributes returned at each level without includefield (PS3.18 table 10.6.3-3 subset). */
const LEVEL_TAGS: Record<QidoLevel, readonly string[]> = {
  studies: [
    "00080020",
    "00080030",
    "00080050",
    "00080090",
    "00100010",
    "00100020",
    "00100030",
    "00100040",
    "0020000D",
    "00200010",
    "00201206",
    "00201208",
  ],
  series: ["00080060", "0008103E", "0020000D", "0020000E", "00200011", "00201209"],
  instances: ["00080016", "00080018", "0020000D", "0020000E", "00200013", "00280010", "00280011", "00280100"],
};
/** Attributes that exist only above the instance level (no `all` leaks instance data into a study). */
const LEVEL_SCOPE: Record<QidoLevel, (tag: string) => boolean> = {
  studies: (t) =>
    t.startsWith("0010") || ["00080020", "00080030", "00080050", "00080090", "0020000D", "00200010"].includes(t),
  series: (t) => !["00080016", "00080018", "00200013", "00280010", "00280011", "00280100"].includes(t),
  instances: () => true,
};

/** Resolves a keyword or 8-hex-digit tag; undefined when neither. */
export function resolveTag(keyOrTag: string): string | undefined {
  if (/^[0-9A-Fa-f]{8}$/.test(keyOrTag)) return keyOrTag.toUpperCase();
  return KEYWORDS[keyOrTag];
}

/** The query's match filters (tag → the value as given), scope filters included. */
function matchFilters(params: URLSearchParams, scope: { study?: string; series?: string }): Array<[string, string]> {
  const filters: Array<[string, string]> = [];
  for (const [key, value] of params) {
    if (CONTROL_PARAMS.has(key)) continue;
    const tag = resolveTag(key);
    if (tag === undefined) throw invalid(`invalid QIDO-RS query parameter "${key}"`);
    filters.push([tag, value]);
  }
  if (scope.study !== undefined) filters.push(["0020000D", scope.study]);
  if (scope.series !== undefined) filters.push(["0020000E", scope.series]);
  return filters;
}

/** Whether the query names anything to match (an empty result is then 204 No Content). */
export function isFilteredQuery(params: URLSearchParams, scope: { study?: string; series?: string }): boolean {
  return (
    scope.study !== undefined || scope.series !== undefined || [...params.keys()].some((k) => !CONTROL_PARAMS.has(k))
  );
}

/** `includefield` values: repeatable, comma-separated, keywords or tags, or `all`. */
export function includedTags(params: URLSearchParams): Set<string> | "all" {
  const out = new Set<string>();
  for (const raw of params.getAll("includefield")) {
    for (const f of raw.split(",")) {
      const name = f.trim();
      if (name === "") continue;
      if (name === "all") return "all";
      const tag = resolveTag(name);
      if (tag === undefined) throw invalid(`invalid includefield "${name}": not a known keyword or an 8-digit hex tag`);
      out.add(tag);
    }
  }
  return out;
}

/**
 * Attribute matching (PS3.4 C.2.2.2): an empty key matches all; UIDs take a list (`\\` or `,`
 * separated, PS3.18 8.3.4.1); DA/TM/DT take ranges `A-B`, `-B`, `A-`; `*` and `?` are
 * wildcards; anything else is an exact, case-sensitive match. With `fuzzymatching=true`, a person
 * name matches when any of its name components starts with the value, ignoring case (the
 * Healthcare API's fuzzy matching on PN).
 */
export function matches(attr: DicomJsonAttribute | undefined, raw: string, fuzzy = false): boolean {
  if (raw === "") return true;
  const first = attr?.Value?.[0];
  const value =
    typeof first === "object" && first !== null
      ? String((first as { Alphabetic?: string }).Alphabetic ?? "")
      : String(first ?? "");
  const vr = attr?.vr;
  if (vr === "UI") return raw.split(/[,\\]/).some((uid) => uid === value);
  if ((vr === "DA" || vr === "TM" || vr === "DT") && raw.includes("-")) {
    if (value === "") return false;
    const [lo, hi] = raw.split("-", 2) as [string, string];
    const norm = (v: string) => (vr === "TM" ? v.replace(/:/g, "") : v);
    const v = norm(value);
    return (lo === "" || v >= norm(lo)) && (hi === "" || v <= norm(hi) || v.startsWith(norm(hi)));
  }
  if (fuzzy && vr === "PN") {
    const want = raw.replace(/\*$/, "").toLowerCase();
    return value
      .toLowerCase()
      .split(/[\^\s=]+/)
      .some((token) => token !== "" && token.startsWith(want));
  }
  return raw.includes("*") || raw.includes("?") ? wildcard(raw).test(value) : value === raw;
}

function wildcard(pattern: string): RegExp {
  const body = pattern
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${body}$`);
}

/**
 * Pure QIDO-RS search: filters by match parameters (exact, UID lists, `*`/`?` wildcards), groups
 * at the level, applies `offset` and `limit` (capped silently at the level's maximum, like the
 * Healthcare API: a client cannot tell a truncated page from the last one), then projects each
 * row onto the level's attributes plus `includefield`.
 */
export function qidoSearch(
  instances: Iterable<StoreInstance>,
  level: QidoLevel,
  scope: { study?: string; series?: string },
  params: URLSearchParams,
): DicomJson[] {
  const filters = matchFilters(params, scope);
  const fuzzy = params.get("fuzzymatching") === "true";
  const include = includedTags(params);
  const limits = QIDO_LIMITS[level];
  const limit = Math.min(limits.max, parseCount(params.get("limit"), limits.default, "limit"));
  const offset = parseCount(params.get("offset"), 0, "offset");

  const keyTag = level === "studies" ? "0020000D" : level === "series" ? "0020000E" : "00080018";
  const seen = new Set<string>();
  const out: DicomJson[] = [];
  let skipped = 0;
  const counts = level === "instances" ? undefined : relatedCounts(instances);
  for (const inst of instances) {
    const attrs = instanceAttributes(inst);
    if (!filters.every(([tag, want]) => matches(attrs[tag], want, fuzzy))) continue;
    const key = String(attrs[keyTag]!.Value![0]);
    if (seen.has(key)) continue;
    seen.add(key);
    if (skipped < offset) {
      skipped++;
      continue;
    }
    if (out.length >= limit) break;
    if (level === "studies") {
      attrs["00201206"] = { vr: "IS", Value: [counts!.studySeries.get(inst.studyUid)!.size] };
      attrs["00201208"] = { vr: "IS", Value: [counts!.studyInstances.get(inst.studyUid)!] };
    }
    if (level === "series") attrs["00201209"] = { vr: "IS", Value: [counts!.seriesInstances.get(inst.seriesUid)!] };
    const tags = new Set(LEVEL_TAGS[level]);
    for (const tag of include === "all" ? Object.keys(attrs) : include)
      if (LEVEL_SCOPE[level](tag) || include !== "all") tags.add(tag);
    const row: DicomJson = {};
    for (const tag of [...tags].sort()) if (attrs[tag] !== undefined) row[tag] = attrs[tag];
    out.push(row);
  }
  return out;
}

/** Series and instances per study, instances per series (one pass over the store). */
function relatedCounts(instances: Iterable<StoreInstance>) {
  const studySeries = new Map<string, Set<string>>();
  const studyInstances = new Map<string, number>();
  const seriesInstances = new Map<string, number>();
  for (const i of instances) {
    let s = studySeries.get(i.studyUid);
    if (s === undefined) studySeries.set(i.studyUid, (s = new Set()));
    s.add(i.seriesUid);
    studyInstances.set(i.studyUid, (studyInstances.get(i.studyUid) ?? 0) + 1);
    seriesInstances.set(i.seriesUid, (seriesInstances.get(i.seriesUid) ?? 0) + 1);
  }
  return { studySeries, studyInstances, seriesInstances };
}

function parseCount(v: string | null, dflt: number, name: string): number {
  if (v === null) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw invalid(`invalid ${name} "${v}": expected a non-negative integer`);
  return name === "limit" && n === 0 ? dflt : n;
}

function invalid(message: string): ApiError {
  return new ApiError(400, "invalid", message, { rpcStatus: "INVALID_ARGUMENT" });
}
