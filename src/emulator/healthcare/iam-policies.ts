import { createHash } from "node:crypto";
import { ApiError } from "../http-util.ts";
import { invalidArgument, objectField, rejectUnknown } from "./rpc.ts";

/** An IAM policy as the Healthcare API speaks it (google.iam.v1.Policy, proto3 JSON). */
export interface HealthcarePolicy {
  version?: number;
  bindings?: { role: string; members: string[]; condition?: Record<string, unknown> }[];
  auditConfigs?: unknown[];
  /** base64 of the policy's version bytes */
  etag: string;
}

/** The etag of a resource that never had a policy set (what the real API answers: `ACAB`). */
export const EMPTY_ETAG = "ACAB";

/**
 * IAM policies of datasets and stores, by resource name, with etags: `setIamPolicy` with a stale
 * etag is 409 ABORTED, as on every Google IAM surface; without an etag it overwrites.
 */
export class IamPolicies {
  readonly #byResource = new Map<string, HealthcarePolicy>();

  get(resource: string): HealthcarePolicy {
    return this.#byResource.get(resource) ?? { etag: EMPTY_ETAG };
  }

  /** Applies a `SetIamPolicyRequest` body (`{policy, updateMask?}`); returns the stored policy. */
  set(resource: string, body: Record<string, unknown>): HealthcarePolicy {
    rejectUnknown(body, ["policy", "updateMask"], "");
    const policy = objectField(body, "policy");
    if (policy === undefined) throw invalidArgument("policy is required");
    rejectUnknown(policy, ["version", "bindings", "etag", "auditConfigs"], "policy.");
    const current = this.get(resource);
    // The etag is bytes in base64: clients such as gcloud send it back URL-safe encoded, so compare the bytes.
    if (
      typeof policy["etag"] === "string" &&
      policy["etag"] !== "" &&
      !Buffer.from(policy["etag"], "base64").equals(Buffer.from(current.etag, "base64"))
    ) {
      throw new ApiError(
        409,
        "aborted",
        "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
        { rpcStatus: "ABORTED" },
      );
    }
    const bindings = policy["bindings"] ?? [];
    if (!Array.isArray(bindings)) throw invalidArgument("policy.bindings must be a list");
    let conditional = false;
    for (const [i, b] of (bindings as unknown[]).entries()) {
      const binding = b as { role?: unknown; members?: unknown; condition?: unknown };
      if (typeof binding !== "object" || binding === null)
        throw invalidArgument(`policy.bindings[${i}] is not an object`);
      if (typeof binding.role !== "string" || !/^(roles|projects\/[^/]+\/roles)\/[\w.]+$/.test(binding.role))
        throw invalidArgument(`Role ${JSON.stringify(binding.role)} is not a valid role.`);
      if (!Array.isArray(binding.members) || binding.members.some((m) => typeof m !== "string" || !validMember(m)))
        throw invalidArgument(`Invalid member in policy.bindings[${i}]: ${JSON.stringify(binding.members)}`);
      if (binding.condition !== undefined) conditional = true;
    }
    const version = policy["version"] === undefined ? 1 : Number(policy["version"]);
    if (![0, 1, 3].includes(version)) throw invalidArgument(`Invalid policy version ${String(policy["version"])}.`);
    if (conditional && version !== 3)
      throw invalidArgument("Policy with conditions must have version 3 (set policy.version to 3).");
    const kept = (bindings as HealthcarePolicy["bindings"])!.filter((b) => b.members.length > 0);
    const stored: HealthcarePolicy = {
      ...(kept.length > 0 ? { version: conditional ? 3 : 1, bindings: kept } : {}),
      ...(Array.isArray(policy["auditConfigs"]) ? { auditConfigs: policy["auditConfigs"] } : {}),
      etag: "",
    };
    stored.etag = createHash("sha256")
      .update(`${resource}\n${current.etag}\n${JSON.stringify(stored)}`)
      .digest()
      .subarray(0, 8)
      .toString("base64");
    this.#byResource.set(resource, stored);
    return stored;
  }

  /** Every policy set, for persistence. */
  entries(): [string, HealthcarePolicy][] {
    return [...this.#byResource];
  }

  /** Puts back a saved policy as it was (etag included). */
  restore(resource: string, policy: HealthcarePolicy): void {
    this.#byResource.set(resource, policy);
  }

  /** Forgets a deleted resource's policy (and those of resources under it). */
  delete(resource: string): void {
    for (const name of [...this.#byResource.keys()])
      if (name === resource || name.startsWith(`${resource}/`)) this.#byResource.delete(name);
  }
}

function validMember(m: string): boolean {
  return (
    m === "allUsers" ||
    m === "allAuthenticatedUsers" ||
    /^(user|serviceAccount|group|domain|principal|principalSet|deleted:user|deleted:serviceAccount|deleted:group):.+$/.test(
      m,
    )
  );
}
