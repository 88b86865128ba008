import type { BucketMeta, ObjectMeta } from "../types.ts";
import { applyFieldsMask, type FieldsMask } from "./fields-mask.ts";

/** The JSON API's percent-encoding of an object name in a path (`/` becomes `%2F`). */
export function encodeName(name: string): string {
  return encodeURIComponent(name);
}

type FieldGetter = (meta: ObjectMeta, baseUrl: string) => unknown;

/** The object resource's fields in the API's order; computed only when a response asks for them. */
const OBJECT_FIELDS: ReadonlyArray<readonly [string, FieldGetter]> = [
  ["kind", () => "storage#object"],
  ["id", (m) => `${m.bucket}/${m.name}/${m.generation}`],
  ["selfLink", (m, base) => `${base}/storage/v1/b/${m.bucket}/o/${encodeName(m.name)}`],
  [
    "mediaLink",
    (m, base) =>
      `${base}/download/storage/v1/b/${m.bucket}/o/${encodeName(m.name)}?generation=${m.generation}&alt=media`,
  ],
  ["name", (m) => m.name],
  ["bucket", (m) => m.bucket],
  ["generation", (m) => m.generation],
  ["metageneration", (m) => m.metageneration],
  ["contentType", (m) => m.contentType],
  ["contentEncoding", (m) => m.contentEncoding],
  ["storageClass", () => "STANDARD"],
  ["size", (m) => String(m.size)],
  ["md5Hash", (m) => m.md5Hash],
  ["crc32c", (m) => m.crc32c],
  ["etag", (m) => objectEtag(m)],
  ["timeCreated", (m) => m.timeCreated],
  ["updated", (m) => m.updated],
  ["timeStorageClassUpdated", (m) => m.timeCreated],
  ["metadata", (m) => m.metadata],
];

/**
 * The object resource as the JSON API returns it (size and generation as strings). With a
 * `fields` mask (for `items` of a listing, or a whole metadata response) only the selected
 * fields are built, which keeps large listings cheap.
 */
export function objectResource(meta: ObjectMeta, baseUrl: string, mask?: FieldsMask): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const all = mask === undefined || mask.get("*") === true;
  for (const [key, get] of OBJECT_FIELDS) {
    const sub = all ? true : mask.get(key);
    if (sub === undefined) continue;
    const value = get(meta, baseUrl);
    if (value === undefined) continue;
    out[key] = sub === true ? value : applyFieldsMask(value, sub);
  }
  return out;
}

export function objectEtag(meta: ObjectMeta): string {
  return Buffer.from(`${meta.generation}/${meta.metageneration}`).toString("base64");
}

/** Headers every media response carries; clients verify against them. */
export function mediaHeaders(meta: ObjectMeta): Record<string, string> {
  return {
    "content-type": meta.contentType,
    "x-goog-hash": `crc32c=${meta.crc32c},md5=${meta.md5Hash}`,
    "x-goog-generation": meta.generation,
    "x-goog-metageneration": meta.metageneration,
    "x-goog-stored-content-length": String(meta.size),
    // Without this header @google-cloud/storage silently skips its CRC32C check.
    "x-goog-stored-content-encoding": meta.contentEncoding ?? "identity",
    "x-goog-storage-class": "STANDARD",
    etag: objectEtag(meta),
    "last-modified": new Date(meta.updated).toUTCString(),
  };
}

export function bucketResource(meta: BucketMeta, baseUrl: string): Record<string, unknown> {
  return {
    kind: "storage#bucket",
    selfLink: `${baseUrl}/storage/v1/b/${meta.name}`,
    id: meta.name,
    name: meta.name,
    projectNumber: meta.projectNumber,
    metageneration: meta.metageneration,
    location: meta.location,
    locationType: meta.location.includes("-") ? "region" : "multi-region",
    storageClass: meta.storageClass,
    etag: "CAE=",
    timeCreated: meta.timeCreated,
    updated: meta.timeCreated,
    iamConfiguration: {
      bucketPolicyOnly: { enabled: meta.uniformBucketLevelAccess },
      uniformBucketLevelAccess: { enabled: meta.uniformBucketLevelAccess },
      publicAccessPrevention: "inherited",
    },
  };
}

/** GCS bucket naming rules, as the service enforces them on insert. */
export function validBucketName(name: string): boolean {
  return /^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$/.test(name) && !name.includes("..") && !/^\d+\.\d+\.\d+\.\d+$/.test(name);
}
