import type { GeneratedInstance } from "../dataset/instances.ts";
import { ApiError } from "../http-util.ts";

export type QidoLevel = "studies" | "series" | "instances";

/** Default and maximum `limit` per level, as the Healthcare API documents them. */
export const QIDO_LIMITS: Record<QidoLevel, { default: number; max: number }> = {
  studies: { default: 100, max: 5000 },
  series: { default: 1000, max: 5000 },
  instances: { default: 1000, max: 50_000 },
};

const KEYWORDS: Record<string, string> = {
  StudyInstanceUID: "0020000D",
  SeriesInstanceUID: "0020000E",
  SOPInstanceUID: "00080018",
  PatientID: "00100020",
  Modality: "00080060",
};
const PARAMS = new Set(["limit", "offset", "includefield", "fuzzymatching"]);

type Attr = { vr: string; Value?: unknown[] };
type DicomJson = Record<string, Attr>;

/** The attributes of an instance that QIDO can return or match on. */
function attributes(i: GeneratedInstance): DicomJson {
  return {
    "00080016": { vr: "UI", Value: ["1.2.840.10008.5.1.4.1.1.7"] },
    "00080018": { vr: "UI", Value: [i.sopInstanceUid] },
    "00080020": { vr: "DA", Value: ["19010101"] },
    "00080060": { vr: "CS", Value: ["CR"] },
    "00100020": { vr: "LO", Value: [i.patientId] },
    "00100010": { vr: "PN", Value: [{ Alphabetic: i.patientId }] },
    "0020000D": { vr: "UI", Value: [i.studyUid] },
    "0020000E": { vr: "UI", Value: [i.seriesUid] },
    "00200011": { vr: "IS", Value: [1] },
    "00200013": { vr: "IS", Value: [1] },
  };
}

const LEVEL_TAGS: Record<QidoLevel, string[]> = {
  studies: ["00080020", "00100010", "00100020", "0020000D"],
  series: ["00080060", "0020000D", "0020000E", "00200011"],
  instances: ["00080016", "00080018", "0020000D", "0020000E", "00200013"],
};

/**
 * Pure QIDO-RS search: filters by UID/keyword match parameters, groups at the level, applies
 * `offset` and `limit` (capped silently at the level's maximum, like the Healthcare API).
 */
export function qidoSearch(instances: readonly GeneratedInstance[], level: QidoLevel, scope: { study?: string; series?: string }, params: URLSearchParams): DicomJson[] {
  const filters: Array<[string, string]> = [];
  for (const [key, value] of params) {
    if (PARAMS.has(key)) continue;
    const tag = KEYWORDS[key] ?? (/^[0-9A-Fa-f]{8}$/.test(key) ? key.toUpperCase() : undefined);
    if (tag === undefined) throw new ApiError(400, "invalid", `invalid QIDO-RS query parameter "${key}"`, { rpcStatus: "INVALID_ARGUMENT" });
    filters.push([tag, value]);
  }
  if (scope.study !== undefined) filters.push(["0020000D", scope.study]);
  if (scope.series !== undefined) filters.push(["0020000E", scope.series]);
  const limits = QIDO_LIMITS[level];
  const limit = Math.min(limits.max, parseCount(params.get("limit"), limits.default, "limit"));
  const offset = parseCount(params.get("offset"), 0, "offset");

  const keyTag = level === "studies" ? "0020000D" : level === "series" ? "0020000E" : "00080018";
  const seen = new Set<string>();
  const out: DicomJson[] = [];
  let skipped = 0;
  for (const inst of instances) {
    const attrs = attributes(inst);
    if (!filters.every(([tag, v]) => String(attrs[tag]?.Value?.[0] ?? "") === v)) continue;
    const key = String(attrs[keyTag]!.Value![0]);
    if (seen.has(key)) continue;
    seen.add(key);
    if (skipped < offset) {
      skipped++;
      continue;
    }
    if (out.length >= limit) break;
    const row: DicomJson = {};
    for (const tag of LEVEL_TAGS[level]) row[tag] = attrs[tag]!;
    if (level === "studies") row["00201208"] = { vr: "IS", Value: [1] };
    if (level === "series") row["00201209"] = { vr: "IS", Value: [1] };
    out.push(row);
  }
  return out;
}

function parseCount(v: string | null, dflt: number, name: string): number {
  if (v === null) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new ApiError(400, "invalid", `invalid ${name} "${v}"`, { rpcStatus: "INVALID_ARGUMENT" });
  return name === "limit" && n === 0 ? dflt : n;
}
