import type { IncomingMessage, ServerResponse } from "node:http";
import { ApiError, decodeSegment, readJson, sendJson } from "../http-util.ts";
import type { ProjectRegistry } from "../projects.ts";
import type { EmulatorService, IamBinding, ObjectStore, RequestContext } from "../types.ts";
import { handleObjects } from "./objects.ts";
import { bucketResource, validBucketName } from "./resources.ts";
import { handleUpload } from "./uploads.ts";

/**
 * The GCS JSON API subset (DESIGN §5): buckets, IAM, objects, media and uploads under
 * `/storage/v1`, `/download/storage/v1` and `/upload/storage/v1` (or `/resumable/upload/storage/v1`).
 */
export function createStorageService(store: ObjectStore, projects: ProjectRegistry): EmulatorService {
  return {
    async handle(req, res, url, ctx) {
      const p = url.pathname;
      // gcloud (apitools) starts resumable uploads at /resumable/upload/storage/v1/….
      if (p.startsWith("/upload/storage/v1/b/") || p.startsWith("/resumable/upload/storage/v1/b/")) {
        await handleUpload(store, req, res, url, ctx);
        return true;
      }
      const media = p.startsWith("/download/storage/v1/b/");
      if (!media && !p.startsWith("/storage/v1/b")) return false;
      const rest = p.slice(media ? "/download/storage/v1/b".length : "/storage/v1/b".length);
      if (!media && (rest === "" || rest === "/")) {
        await bucketCollection(store, projects, req, res, url, ctx);
        return true;
      }
      const m = /^\/([^/]+)(\/.*)?$/.exec(rest);
      if (m === null) return false;
      const bucket = decodeSegment(m[1]!);
      const tail = m[2] ?? "";
      if (tail.startsWith("/o")) {
        if (store.getBucket(bucket) === undefined)
          throw new ApiError(404, "notFound", "The specified bucket does not exist.");
        return handleObjects(store, bucket, tail.slice(2), media, req, res, url, ctx);
      }
      if (media) return false;
      if (tail === "" || tail === "/") return bucketItem(store, bucket, req, res, ctx);
      if (tail === "/iam") return iamPolicy(store, bucket, req, res, url);
      if (tail === "/iam/testPermissions" && req.method === "GET") {
        mustBucket(store, bucket);
        sendJson(res, 200, {
          kind: "storage#testIamPermissionsResponse",
          permissions: url.searchParams.getAll("permissions"),
        });
        return true;
      }
      return false;
    },
  };
}

async function bucketCollection(
  store: ObjectStore,
  projects: ProjectRegistry,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  ctx: RequestContext,
): Promise<void> {
  const project = url.searchParams.get("project");
  if (req.method === "GET") {
    if (project === null) throw new ApiError(400, "required", "Required parameter: project");
    const items = store.listBuckets(projects.ensure(project).projectNumber).map((b) => bucketResource(b, ctx.baseUrl));
    sendJson(res, 200, { kind: "storage#buckets", items });
    return;
  }
  if (req.method !== "POST") throw new ApiError(405, "methodNotAllowed", `${req.method} is not allowed here`);
  const body = await readJson(req);
  if (project === null) throw new ApiError(400, "required", "Required parameter: project");
  const name = body["name"];
  if (typeof name !== "string" || name === "") throw new ApiError(400, "required", "Required field: name");
  if (!validBucketName(name)) throw new ApiError(400, "invalid", "Invalid bucket name: '" + name + "'");
  const iam = body["iamConfiguration"] as
    { uniformBucketLevelAccess?: { enabled?: unknown }; bucketPolicyOnly?: { enabled?: unknown } } | undefined;
  const meta = store.createBucket({
    name,
    projectNumber: projects.ensure(project).projectNumber,
    ...(typeof body["location"] === "string" ? { location: body["location"] } : {}),
    ...(typeof body["storageClass"] === "string" ? { storageClass: body["storageClass"] } : {}),
    uniformBucketLevelAccess:
      iam?.uniformBucketLevelAccess?.enabled === true || iam?.bucketPolicyOnly?.enabled === true,
  });
  if (meta === undefined) {
    const existing = store.getBucket(name)!;
    const mine = existing.projectNumber === projects.ensure(project).projectNumber;
    throw new ApiError(
      409,
      "conflict",
      mine
        ? "Your previous request to create the named bucket succeeded and you already own it."
        : "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.",
    );
  }
  sendJson(res, 200, bucketResource(meta, ctx.baseUrl));
}

function bucketItem(
  store: ObjectStore,
  bucket: string,
  req: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
): boolean {
  if (req.method === "GET") {
    sendJson(res, 200, bucketResource(mustBucket(store, bucket), ctx.baseUrl));
    return true;
  }
  if (req.method === "DELETE") {
    mustBucket(store, bucket);
    if (!store.deleteBucket(bucket))
      throw new ApiError(409, "conflict", "The bucket you tried to delete is not empty.");
    res.writeHead(204).end();
    return true;
  }
  return false;
}

async function iamPolicy(
  store: ObjectStore,
  bucket: string,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<boolean> {
  mustBucket(store, bucket);
  if (req.method === "GET") {
    const policy = store.getPolicy(bucket)!;
    const requested = Number(url.searchParams.get("optionsRequestedPolicyVersion") ?? "1");
    const hasConditions = policy.bindings.some((b) => b.condition !== undefined);
    if (hasConditions && requested < 3) {
      throw new ApiError(
        400,
        "invalid",
        "Bucket has IAM conditions; request policy version 3 (optionsRequestedPolicyVersion=3) to read it.",
      );
    }
    sendJson(res, 200, policy);
    return true;
  }
  if (req.method !== "PUT") return false;
  const body = await readJson(req);
  const bindings = parseBindings(body["bindings"]);
  const version = typeof body["version"] === "number" ? body["version"] : 1;
  if (bindings.some((b) => b.condition !== undefined) && version < 3)
    throw new ApiError(400, "invalid", "IAM conditions require policy version 3.");
  const etag = typeof body["etag"] === "string" ? body["etag"] : undefined;
  const next = store.setPolicy(bucket, { version, bindings }, etag);
  if (next === undefined)
    throw new ApiError(
      412,
      "conditionNotMet",
      "Precondition Failed: the policy's etag does not match the current policy (it was changed concurrently); read it again and retry.",
    );
  sendJson(res, 200, next);
  return true;
}

function parseBindings(value: unknown): IamBinding[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new ApiError(400, "invalid", "bindings must be an array");
  return value.map((b, i) => {
    if (typeof b !== "object" || b === null) throw new ApiError(400, "invalid", `bindings[${i}] must be an object`);
    const { role, members, condition } = b as Record<string, unknown>;
    if (typeof role !== "string" || !role.startsWith("roles/"))
      throw new ApiError(400, "invalid", `bindings[${i}].role must be a role name such as roles/storage.objectAdmin`);
    if (
      !Array.isArray(members) ||
      !members.every(
        (m) =>
          typeof m === "string" &&
          /^(user|serviceAccount|group|domain|projectOwner|projectEditor|projectViewer|principal|principalSet):.+|^allUsers$|^allAuthenticatedUsers$/.test(
            m,
          ),
      )
    ) {
      throw new ApiError(
        400,
        "invalid",
        `bindings[${i}].members must be IAM member strings such as serviceAccount:x@y.iam.gserviceaccount.com`,
      );
    }
    const out: IamBinding = { role, members: members as string[] };
    if (condition !== undefined) {
      if (
        typeof condition !== "object" ||
        condition === null ||
        typeof (condition as { expression?: unknown }).expression !== "string"
      ) {
        throw new ApiError(400, "invalid", `bindings[${i}].condition needs an expression`);
      }
      out.condition = condition as IamBinding["condition"] & object;
    }
    return out;
  });
}

function mustBucket(store: ObjectStore, bucket: string) {
  const b = store.getBucket(bucket);
  if (b === undefined) throw new ApiError(404, "notFound", "The specified bucket does not exist.");
  return b;
}
