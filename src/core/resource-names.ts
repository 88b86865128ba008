/**
 * Pure parsers for the names users type: `gs://` URIs, bucket names (GCS naming rules) and
 * Healthcare resource names. Each returns a value or a message saying what is wrong.
 */

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

export interface GsUri {
  readonly bucket: string;
  /** The object prefix without a leading slash; "" for the whole bucket. */
  readonly prefix: string;
}

/** Checks a bucket name against the GCS naming rules (DNS-style names, 3–63 chars per label, no IP addresses, no "goog"). */
export function checkBucketName(name: string): string | undefined {
  if (name.length < 3 || name.length > 222) return `bucket name "${name}" must be 3–222 characters long`;
  if (!/^[a-z0-9][a-z0-9._-]*[a-z0-9]$/.test(name)) {
    return `bucket name "${name}" may contain only lowercase letters, digits, '-', '_' and '.', and must start and end with a letter or digit`;
  }
  if (!name.includes(".") && name.length > 63)
    return `bucket name "${name}" is longer than 63 characters (only dotted names may be longer)`;
  for (const label of name.split(".")) {
    if (label.length === 0 || label.length > 63)
      return `bucket name "${name}" has a dot-separated part that is empty or longer than 63 characters`;
  }
  if (/^\d+\.\d+\.\d+\.\d+$/.test(name)) return `bucket name "${name}" may not be an IP address`;
  if (name.startsWith("goog") || /g[o0]{2}gle/.test(name))
    return `bucket name "${name}" may not start with "goog" or contain "google"`;
  if (name.includes("..") || name.includes(".-") || name.includes("-."))
    return `bucket name "${name}" may not contain "..", ".-" or "-."`;
  return undefined;
}

/** Parses `gs://bucket[/prefix]`. A trailing slash on the prefix is kept out. */
export function parseGsUri(uri: string): Parsed<GsUri> {
  const m = /^gs:\/\/([^/]+)(?:\/(.*))?$/.exec(uri);
  if (m === null) return { ok: false, error: `"${uri}" is not a gs://BUCKET[/PREFIX] URI` };
  const bucket = m[1] ?? "";
  const bad = checkBucketName(bucket);
  if (bad !== undefined) return { ok: false, error: bad };
  const prefix = (m[2] ?? "").replace(/\/+$/, "");
  if (prefix.includes("//")) return { ok: false, error: `"${uri}": the prefix contains an empty segment ("//")` };
  return { ok: true, value: { bucket, prefix } };
}

export interface DatasetName {
  readonly project: string;
  readonly location: string;
  readonly dataset: string;
}
export interface StoreName extends DatasetName {
  readonly store: string;
  readonly kind: "dicomStores" | "fhirStores";
}

const ID = "[A-Za-z0-9_.-]{1,256}";
const PROJECT = "[a-z][a-z0-9-]{4,28}[a-z0-9]|[a-z0-9.:-]{1,100}";
const STORE_RE = new RegExp(
  `^projects/(${PROJECT})/locations/(${ID})/datasets/(${ID})/(dicomStores|fhirStores)/(${ID})$`,
);

/** Parses `projects/P/locations/L/datasets/D/dicomStores/S` (or fhirStores). */
export function parseStoreName(name: string, kind?: StoreName["kind"]): Parsed<StoreName> {
  const m = STORE_RE.exec(name);
  if (m === null) {
    return {
      ok: false,
      error: `"${name}" is not a store name of the form projects/PROJECT/locations/LOCATION/datasets/DATASET/${kind ?? "dicomStores"}/STORE`,
    };
  }
  const value: StoreName = {
    project: m[1]!,
    location: m[2]!,
    dataset: m[3]!,
    kind: m[4] as StoreName["kind"],
    store: m[5]!,
  };
  if (kind !== undefined && value.kind !== kind)
    return { ok: false, error: `"${name}" is a ${value.kind.replace(/s$/, "")}, expected a ${kind.replace(/s$/, "")}` };
  return { ok: true, value };
}

/** `projects/P/locations/L/datasets/D` */
export function datasetPath(d: DatasetName): string {
  return `projects/${d.project}/locations/${d.location}/datasets/${d.dataset}`;
}

/** `projects/P/locations/L/datasets/D/dicomStores/S` */
export function storePath(s: StoreName): string {
  return `${datasetPath(s)}/${s.kind}/${s.store}`;
}

const OPERATION_RE = new RegExp(`^projects/(${PROJECT})/locations/(${ID})/datasets/(${ID})/operations/(${ID})$`);

/** Parses `projects/P/locations/L/datasets/D/operations/ID`. */
export function parseOperationName(name: string): Parsed<DatasetName & { readonly id: string }> {
  const m = OPERATION_RE.exec(name);
  if (m === null)
    return {
      ok: false,
      error: `"${name}" is not an operation name of the form projects/P/locations/L/datasets/D/operations/ID`,
    };
  return { ok: true, value: { project: m[1]!, location: m[2]!, dataset: m[3]!, id: m[4]! } };
}

/** The Healthcare service agent of a project number. */
export function serviceAgentFor(projectNumber: string): string {
  return `service-${projectNumber}@gcp-sa-healthcare.iam.gserviceaccount.com`;
}

/** `bq://PROJECT.DATASET.TABLE` → its parts, or a message saying what is wrong. Pure. */
export function parseTableUri(uri: string): Parsed<{ project: string; dataset: string; table: string }> {
  const m = /^bq:\/\/([a-z][a-z0-9.:-]{4,127})\.([A-Za-z0-9_]{1,1024})\.([A-Za-z0-9_$-]{1,1024})$/.exec(uri);
  if (m === null)
    return {
      ok: false,
      error: `"${uri}" is not a BigQuery table URI of the form bq://PROJECT.DATASET.TABLE (dataset: letters, digits, underscores)`,
    };
  return { ok: true, value: { project: m[1]!, dataset: m[2]!, table: m[3]! } };
}
