import { lookup } from "node:dns/promises";
import type * as StorageSdk from "@google-cloud/storage";
import type { Storage } from "@google-cloud/storage";
import { abortable } from "../core/abort.ts";
import { HcexportError, PermissionError, UnreachableError, unknownHost, UsageError } from "../core/errors.ts";
import { redactSecrets } from "../core/redact.ts";
import type { Policy } from "../workflow/iam-policy.ts";
import { configuredEndpoints, type GoogleCredentials } from "./auth.ts";
import { mayCarryGoogleCredentials } from "./credential-destination.ts";
import type { Endpoints } from "./endpoints.ts";

/** What the workflow needs from Cloud Storage's admin surface (a port; fakes in unit tests). */
export interface BucketAdmin {
  /** Creates the bucket; `created: false` when it already exists and is ours (409 + already own it). */
  ensureBucket(spec: BucketSpec): Promise<{ created: boolean }>;
  /** Read-only: whether the bucket exists (the precondition re-verified before an export). */
  bucketExists?(bucket: string): Promise<boolean>;
  getPolicy(bucket: string): Promise<Policy>;
  /** Writes the policy; rejects with `{ status: 412 }` when its etag is stale. */
  setPolicy(bucket: string, policy: Policy): Promise<Policy>;
  /**
   * Makes `gs://bucket/name` hold exactly `data` (idempotent): uploaded only if absent
   * (ifGenerationMatch=0); an object already there with other bytes is replaced.
   */
  ensureObject?(bucket: string, name: string, data: Buffer, contentType: string): Promise<{ created: boolean }>;
}

export interface BucketSpec {
  readonly name: string;
  readonly project: string;
  readonly location?: string;
  readonly storageClass?: string;
  readonly uniformAccess?: boolean;
}

/** An error with the HTTP status of the Cloud Storage call that failed. */
export class StorageAdminError extends HcexportError {
  readonly status: number;
  constructor(message: string, status: number) {
    super(message, status === 403 || status === 401 ? 3 : 1);
    this.status = status;
  }
}

/**
 * BucketAdmin over @google-cloud/storage. Against the local cloud (anonymous endpoints) no
 * credentials are looked up; otherwise the invocation's already-resolved credentials (`auth`),
 * sent only where `mayCarryGoogleCredentials` allows. The SDK takes no abort signal, so each call
 * is raced against `signal` (a Ctrl-C never waits for its retries).
 */
export function storageAdmin(
  endpoints: Endpoints,
  projectId?: string,
  auth?: GoogleCredentials,
  signal?: AbortSignal,
): BucketAdmin {
  // The SDK is loaded on first use (~0.25 s of startup): mirror, dicomweb and fhir never need it.
  let sdk: Promise<typeof StorageSdk> | undefined;
  const withAuth = !endpoints.anonymous && mayCarryGoogleCredentials(endpoints.storage, configuredEndpoints(endpoints));
  // The SDK retries network errors (a host that does not resolve included) for a minute whatever
  // retryableErrorFn says: look the host up once first, and fail at once if it does not exist.
  let resolvable: Promise<void> | undefined;
  const client = async (project?: string): Promise<Storage> => {
    await (resolvable ??= hostResolves(endpoints.storage));
    const m = await (sdk ??= import("@google-cloud/storage"));
    return new m.Storage({
      apiEndpoint: endpoints.storage,
      ...(project === undefined ? {} : { projectId: project }),
      ...(withAuth && auth !== undefined ? { authClient: await auth.library() } : {}),
      useAuthWithCustomEndpoint: withAuth,
      // A host that does not resolve stays unresolvable: fail now (exit 1), not after a minute of backoff.
      retryOptions: {
        autoRetry: true,
        maxRetries: 5,
        retryableErrorFn: (err) => unknownHost(err) === undefined && m.RETRYABLE_ERR_FN_DEFAULT(err),
      },
    });
  };
  let shared: Promise<Storage> | undefined;
  const storageFor = (project?: string): Promise<Storage> =>
    project === projectId ? (shared ??= client(projectId)) : client(project);
  return {
    async ensureBucket(spec) {
      try {
        const forProject = await abortable(storageFor(spec.project), signal);
        await abortable(
          forProject.createBucket(spec.name, {
            ...(spec.location === undefined ? {} : { location: spec.location }),
            ...(spec.storageClass === undefined ? {} : { storageClass: spec.storageClass }),
            ...(spec.uniformAccess === undefined
              ? {}
              : { iamConfiguration: { uniformBucketLevelAccess: { enabled: spec.uniformAccess } } }),
          }),
          signal,
        );
        return { created: true };
      } catch (err) {
        if (signal?.aborted === true) throw err;
        const status = statusOf(err);
        const message = redactSecrets(err instanceof Error ? err.message : String(err));
        if (status === 409 && /already own it/i.test(message)) return { created: false };
        if (status === 409)
          throw new UsageError(`bucket name "${spec.name}" is taken by someone else: ${message}`, {
            hint: "choose another bucket name in the config (bucket names are global)",
          });
        throw wrap(err, `create bucket gs://${spec.name}`);
      }
    },
    async bucketExists(bucket) {
      try {
        const [exists] = await (await storageFor(projectId)).bucket(bucket).exists();
        return exists;
      } catch (err) {
        throw wrap(err, `look up gs://${bucket}`);
      }
    },
    async getPolicy(bucket) {
      try {
        const storage = await abortable(storageFor(projectId), signal);
        const [policy] = await abortable(storage.bucket(bucket).iam.getPolicy({ requestedPolicyVersion: 3 }), signal);
        return policy as Policy;
      } catch (err) {
        if (signal?.aborted === true) throw err;
        throw wrap(err, `read the IAM policy of gs://${bucket}`);
      }
    },
    async setPolicy(bucket, policy) {
      try {
        const storage = await abortable(storageFor(projectId), signal);
        const [next] = await abortable(storage.bucket(bucket).iam.setPolicy(policy as never), signal);
        return next as Policy;
      } catch (err) {
        if (signal?.aborted === true) throw err;
        throw wrap(err, `write the IAM policy of gs://${bucket}`);
      }
    },
    async ensureObject(bucket, name, data, contentType) {
      const file = (await abortable(storageFor(projectId), signal)).bucket(bucket).file(name);
      const aborted = () => signal?.aborted === true;
      const save = (ifGenerationMatch?: number) =>
        abortable(
          file.save(data, {
            resumable: false,
            contentType,
            ...(ifGenerationMatch === undefined ? {} : { preconditionOpts: { ifGenerationMatch } }),
          }),
          signal,
        );
      try {
        await save(0);
        return { created: true };
      } catch (err) {
        if (aborted()) throw err;
        if (statusOf(err) !== 412) throw wrap(err, `upload gs://${bucket}/${name}`);
      }
      try {
        // Present: reused when it holds these bytes (a rerun), replaced otherwise.
        const [have] = await abortable(file.download(), signal);
        if (!have.equals(data)) await save();
        return { created: false };
      } catch (err) {
        if (aborted()) throw err;
        throw wrap(err, `upload gs://${bucket}/${name}`);
      }
    },
  };
}

/** Rejects with `UnreachableError` when the URL's host name does not resolve (NXDOMAIN); other lookup errors pass. */
async function hostResolves(url: string): Promise<void> {
  const host = new URL(url).hostname.replace(/^\[(.*)\]$/, "$1");
  try {
    await lookup(host);
  } catch (err) {
    const dns = unknownHost(err);
    if (dns !== undefined) throw new UnreachableError(new URL(url).host, dns.code, err);
  }
}

function statusOf(err: unknown): number {
  const code = (err as { code?: unknown }).code;
  return typeof code === "number" ? code : 0;
}

function wrap(err: unknown, what: string): Error {
  if (err instanceof HcexportError) return err;
  const dns = unknownHost(err);
  if (dns !== undefined) return new UnreachableError(dns.host ?? "the storage endpoint", dns.code, err);
  const status = statusOf(err);
  const message = redactSecrets(`could not ${what}: ${err instanceof Error ? err.message : String(err)}`);
  if (status === 403 || status === 401) {
    return new PermissionError(message, {
      hint: "the caller needs storage.buckets.get/create and storage.buckets.getIamPolicy/setIamPolicy (e.g. roles/storage.admin) on the destination bucket",
    });
  }
  return new StorageAdminError(message, status);
}
