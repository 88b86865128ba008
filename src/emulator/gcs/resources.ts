import type { BucketMeta, ObjectMeta } from "../types.ts";

/** The JSON API's percent-encoding of an object name in a path (`/` becomes `%2F`). */
export function encodeName(name: string): string {
  return encodeURIComponent(name);
}

/** The object resource as the JSON API returns it (size and generation as strings). */
export function objectResource(meta: ObjectMeta, baseUrl: string): Record<string, unknown> {
  const enc = encodeName(meta.name);
  return {
    kind: "storage#object",
    id: `${meta.bucket}/${meta.name}/${meta.generation}`,
    selfLink: `${baseUrl}/storage/v1/b/${meta.bucket}/o/${enc}`,
    mediaLink: `${baseUrl}/download/storage/v1/b/${meta.bucket}/o/${enc}?generation=${meta.generation}&alt=media`,
    name: meta.name,
    bucket: meta.bucket,
    generation: meta.generation,
    metageneration: meta.metageneration,
    contentType: meta.contentType,
    storageClass: "STANDARD",
    size: String(meta.size),
    md5Hash: meta.md5Hash,
    crc32c: meta.crc32c,
    etag: objectEtag(meta),
    timeCreated: meta.timeCreated,
    updated: meta.updated,
    timeStorageClassUpdated: meta.timeCreated,
    ...(meta.metadata === undefined ? {} : { metadata: meta.metadata }),
  };
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
    "x-goog-stored-content-encoding": "identity",
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
