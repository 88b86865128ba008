import { invalidArgument, rejectUnknown } from "./rpc.ts";

/**
 * The fields of the Dataset, DicomStore and FhirStore resources (field names from the v1 and
 * v1beta1 discovery documents the Google Cloud SDK ships), their validation, and `updateMask`
 * patches. Pure: bodies in, configs out.
 */

export type ResourceKind = "dataset" | "dicomStore" | "fhirStore";
type Version = "v1" | "v1beta1";

const FIELDS: Record<ResourceKind, Record<Version, readonly string[]>> = {
  dataset: {
    v1: ["name", "timeZone", "encryptionSpec", "satisfiesPzs", "satisfiesPzi"],
    v1beta1: ["name", "timeZone", "encryptionSpec", "satisfiesPzs", "satisfiesPzi"],
  },
  dicomStore: {
    v1: ["name", "labels", "notificationConfig", "streamConfigs"],
    v1beta1: ["name", "labels", "notificationConfig", "streamConfigs"],
  },
  fhirStore: {
    v1: [
      "name",
      "bulkExportGcsDestination",
      "complexDataTypeReferenceParsing",
      "consentConfig",
      "defaultSearchHandlingStrict",
      "disableReferentialIntegrity",
      "disableResourceVersioning",
      "enableUpdateCreate",
      "labels",
      "notificationConfig",
      "notificationConfigs",
      "streamConfigs",
      "validationConfig",
      "version",
    ],
    v1beta1: [
      "name",
      "bulkExportGcsDestination",
      "complexDataTypeReferenceParsing",
      "consentConfig",
      "defaultSearchHandlingStrict",
      "disableReferentialIntegrity",
      "disableResourceVersioning",
      "enableHistoryModifications",
      "enableUpdateCreate",
      "labels",
      "notificationConfig",
      "notificationConfigs",
      "searchConfig",
      "streamConfigs",
      "validationConfig",
      "version",
    ],
  },
};

/** Fields fixed at creation (a mask naming them is 400). `name` and output-only fields never change. */
const IMMUTABLE: Record<ResourceKind, readonly string[]> = {
  dataset: ["name", "encryptionSpec", "satisfiesPzs", "satisfiesPzi"],
  dicomStore: ["name"],
  fhirStore: ["name", "version", "disableReferentialIntegrity", "disableResourceVersioning"],
};

export const FHIR_VERSIONS = ["DSTU2", "STU3", "R4", "R5"] as const;
const LABEL_KEY = /^\p{Ll}[\p{Ll}\p{N}_-]{0,62}$/u;
const LABEL_VALUE = /^[\p{Ll}\p{N}_-]{0,63}$/u;
const TOPIC = /^projects\/[^/]+\/topics\/[^/]+$/;
const BQ_TABLE = /^bq:\/\/[^.]+\.[^.]+\.[^.]+$/;

/** Validates a create/patch body of `kind`; returns its settable fields (without `name`). */
export function validateFields(kind: ResourceKind, version: Version, body: Record<string, unknown>) {
  rejectUnknown(body, FIELDS[kind][version], "");
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) {
    if (key === "name" || key === "satisfiesPzs" || key === "satisfiesPzi") continue;
    out[key] = value;
  }
  if (out["labels"] !== undefined) checkLabels(out["labels"]);
  const nc = out["notificationConfig"] as { pubsubTopic?: unknown } | undefined;
  if (nc !== undefined) {
    if (typeof nc !== "object" || nc === null) throw invalidArgument("notificationConfig must be an object");
    if (nc.pubsubTopic !== undefined && nc.pubsubTopic !== "" && !TOPIC.test(String(nc.pubsubTopic)))
      throw invalidArgument(
        `Invalid notificationConfig.pubsubTopic "${String(nc.pubsubTopic)}": expected projects/PROJECT/topics/TOPIC`,
      );
  }
  if (out["streamConfigs"] !== undefined) {
    if (!Array.isArray(out["streamConfigs"])) throw invalidArgument("streamConfigs must be a list");
    for (const [i, sc] of (out["streamConfigs"] as unknown[]).entries()) {
      const uri = (sc as { bigqueryDestination?: { tableUri?: unknown; datasetUri?: unknown } })?.bigqueryDestination;
      const target = kind === "dicomStore" ? uri?.tableUri : (uri?.datasetUri ?? uri?.tableUri);
      if (kind === "dicomStore" && (typeof target !== "string" || !BQ_TABLE.test(target)))
        throw invalidArgument(
          `Invalid streamConfigs[${i}].bigqueryDestination.tableUri ${JSON.stringify(target)}: expected bq://PROJECT.DATASET.TABLE`,
        );
    }
  }
  if (kind === "fhirStore" && out["version"] !== undefined && !FHIR_VERSIONS.includes(out["version"] as never))
    throw invalidArgument(
      `Invalid value at 'fhir_store.version' (type.googleapis.com/google.cloud.healthcare.${version}.fhir.FhirStore.Version), "${String(out["version"])}"`,
    );
  if (kind === "dataset" && out["timeZone"] !== undefined && !validTimeZone(out["timeZone"]))
    throw invalidArgument(`Invalid timeZone "${String(out["timeZone"])}": expected an IANA time zone such as UTC`);
  return out;
}

/** The fields a new resource gets: validated body plus the API's defaults. */
export function createFields(
  kind: ResourceKind,
  version: Version,
  body: Record<string, unknown>,
): Record<string, unknown> {
  const out = validateFields(kind, version, body);
  if (kind === "dataset" && out["timeZone"] === undefined) out["timeZone"] = "UTC";
  if (kind === "fhirStore" && out["version"] === undefined) {
    if (version === "v1") throw invalidArgument("fhir_store.version is required; set it to R4, STU3 or DSTU2");
    out["version"] = "STU3";
  }
  return out;
}

/**
 * Applies `updateMask` (comma-separated field paths such as `labels` or
 * `notificationConfig.pubsubTopic`) from a patch body onto a resource's fields: a masked path
 * absent from the body is cleared.
 */
export function applyMask(
  kind: ResourceKind,
  version: Version,
  current: Record<string, unknown>,
  body: Record<string, unknown>,
  updateMask: string | null,
): Record<string, unknown> {
  const patch = validateFields(kind, version, body);
  if (updateMask === null || updateMask.trim() === "")
    throw invalidArgument("updateMask is required: name the fields to update, e.g. updateMask=labels");
  const next = structuredClone(current);
  for (const path of updateMask.split(",").map((p) => p.trim())) {
    const top = path.split(".")[0]!;
    if (!FIELDS[kind][version].includes(top)) throw invalidArgument(`Invalid update_mask path "${path}"`);
    if (IMMUTABLE[kind].includes(top))
      throw invalidArgument(`field "${top}" is immutable and cannot be updated (update_mask "${path}")`);
    setPath(next, path, getPath(patch, path));
  }
  validateFields(kind, version, next);
  return next;
}

function getPath(obj: Record<string, unknown>, path: string): unknown {
  let cur: unknown = obj;
  for (const seg of path.split(".")) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const segs = path.split(".");
  let cur = obj;
  for (const seg of segs.slice(0, -1)) {
    if (typeof cur[seg] !== "object" || cur[seg] === null) cur[seg] = {};
    cur = cur[seg] as Record<string, unknown>;
  }
  const last = segs.at(-1)!;
  if (value === undefined) delete cur[last];
  else cur[last] = value;
}

function checkLabels(labels: unknown): void {
  if (typeof labels !== "object" || labels === null || Array.isArray(labels))
    throw invalidArgument("labels must be a map of strings");
  const entries = Object.entries(labels as Record<string, unknown>);
  if (entries.length > 64) throw invalidArgument("at most 64 labels may be set");
  for (const [k, v] of entries) {
    if (!LABEL_KEY.test(k)) throw invalidArgument(`Invalid label key "${k}"`);
    if (typeof v !== "string" || !LABEL_VALUE.test(v)) throw invalidArgument(`Invalid value for label "${k}"`);
  }
}

function validTimeZone(tz: unknown): boolean {
  if (typeof tz !== "string") return false;
  try {
    new Intl.DateTimeFormat("en", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}
