import { createHash } from "node:crypto";
import { ApiError, decodeSegment, readJson, sendJson } from "../http-util.ts";
import type { ProjectRegistry } from "../projects.ts";
import type { EmulatorService, IamBinding } from "../types.ts";

/** A project's IAM policy as Resource Manager speaks it. */
export interface ProjectPolicy {
  version: number;
  etag: string;
  bindings: IamBinding[];
  auditConfigs?: unknown[];
}

/** The owner every emulated project starts with (its policy is never empty, like a real project's). */
export const PROJECT_OWNER = "user:owner@example.com";

/** What Resource Manager answers for a stale etag (HTTP 409, ABORTED). */
export const CONCURRENT_CHANGE_MESSAGE =
  "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.";

/**
 * Project IAM policies of the local cloud. A project's first policy holds its owner and, like a
 * real project with the Healthcare API enabled, its Healthcare service agent's
 * `roles/healthcare.serviceAgent` binding. Every write gets a new etag.
 */
export class ProjectPolicies {
  readonly #policies = new Map<string, ProjectPolicy>();
  readonly #projects: ProjectRegistry;
  #writes = 0;

  constructor(projects: ProjectRegistry) {
    this.#projects = projects;
  }

  get(projectId: string): ProjectPolicy {
    let p = this.#policies.get(projectId);
    if (p === undefined) {
      const n = this.#projects.ensure(projectId).projectNumber;
      p = {
        version: 1,
        etag: this.#etag(projectId),
        bindings: [
          {
            role: "roles/healthcare.serviceAgent",
            members: [`serviceAccount:service-${n}@gcp-sa-healthcare.iam.gserviceaccount.com`],
          },
          { role: "roles/owner", members: [PROJECT_OWNER] },
        ],
      };
      this.#policies.set(projectId, p);
    }
    return p;
  }

  /** Replaces the policy; "stale" when `policy.etag` is set and not the current one. */
  set(projectId: string, policy: Omit<ProjectPolicy, "etag"> & { etag?: string }): ProjectPolicy | "stale" {
    const current = this.get(projectId);
    if (policy.etag !== undefined && policy.etag !== current.etag) return "stale";
    const next: ProjectPolicy = {
      version: policy.version,
      etag: this.#etag(projectId),
      bindings: structuredClone(policy.bindings),
      ...(policy.auditConfigs === undefined ? {} : { auditConfigs: structuredClone(policy.auditConfigs) }),
    };
    this.#policies.set(projectId, next);
    return next;
  }

  #etag(projectId: string): string {
    // 8 bytes, base64, starting with 0x07 like the real ones ("BwX…").
    const h = createHash("sha256").update(`${projectId}:${++this.#writes}`).digest();
    h[0] = 0x07;
    h[1] = h[1]! & 0x0f;
    return h.subarray(0, 8).toString("base64");
  }
}

const MEMBER =
  /^(user|serviceAccount|group|domain|principal|principalSet|deleted:[a-zA-Z]+):.+$|^allUsers$|^allAuthenticatedUsers$/;

/** Checks a policy sent to setIamPolicy; returns it typed, or throws the API's 400. */
export function parsePolicy(input: unknown): Omit<ProjectPolicy, "etag"> & { etag?: string } {
  if (typeof input !== "object" || input === null) throw badPolicy("policy is required");
  const p = input as Record<string, unknown>;
  const version = p["version"] === undefined ? 1 : Number(p["version"]);
  if (![1, 2, 3].includes(version)) throw badPolicy(`Invalid policy version ${String(p["version"])}`);
  const bindings = p["bindings"] ?? [];
  if (!Array.isArray(bindings)) throw badPolicy("policy.bindings must be a list");
  const out: IamBinding[] = [];
  for (const [i, b] of (bindings as unknown[]).entries()) {
    const { role, members, condition } = (b ?? {}) as Record<string, unknown>;
    if (
      typeof role !== "string" ||
      !/^(roles|projects\/[^/]+\/roles|organizations\/\d+\/roles)\/[A-Za-z0-9_.]+$/.test(role)
    )
      throw badPolicy(`Role ${String(role)} is not supported for this resource.`);
    if (!Array.isArray(members) || members.some((m) => typeof m !== "string" || !MEMBER.test(m)))
      throw badPolicy(`Invalid member in policy.bindings[${i}].members: ${JSON.stringify(members)}`);
    if (condition !== undefined) {
      if (typeof (condition as { expression?: unknown }).expression !== "string")
        throw badPolicy(`policy.bindings[${i}].condition.expression is required`);
      if (version < 3)
        throw badPolicy(
          "Policies with conditions must have version 3 (set policy.version to 3 and send options.requestedPolicyVersion 3 when reading).",
        );
    }
    out.push(b as IamBinding);
  }
  const etag = p["etag"];
  if (etag !== undefined && typeof etag !== "string") throw badPolicy("policy.etag must be a string");
  return {
    version,
    bindings: out,
    ...(etag === undefined ? {} : { etag }),
    ...(Array.isArray(p["auditConfigs"]) ? { auditConfigs: p["auditConfigs"] as unknown[] } : {}),
  };
}

function badPolicy(message: string): ApiError {
  return new ApiError(400, "badRequest", message, { rpcStatus: "INVALID_ARGUMENT" });
}

/**
 * Resource Manager project IAM: `POST /v1/projects/P:getIamPolicy|:setIamPolicy` (and `/v3/`).
 * A stale etag is 409 ABORTED, as the real API answers it.
 */
export function createProjectIamService(projects: ProjectRegistry, policies: ProjectPolicies): EmulatorService {
  return {
    async handle(req, res, url) {
      const m = /^\/(v1|v3)\/projects\/([^/:]+):(getIamPolicy|setIamPolicy)$/.exec(url.pathname);
      if (m === null || req.method !== "POST") return false;
      const id = decodeSegment(m[2]!);
      const body = await readJson(req);
      if (projects.isHidden(id) || !/^[a-z0-9][a-z0-9-]{0,62}$/.test(id))
        throw new ApiError(403, "forbidden", `The caller does not have permission`, { rpcStatus: "PERMISSION_DENIED" });
      if (m[3] === "getIamPolicy") {
        sendJson(res, 200, policies.get(id));
        return true;
      }
      const next = policies.set(id, parsePolicy(body["policy"]));
      if (next === "stale") throw new ApiError(409, "aborted", CONCURRENT_CHANGE_MESSAGE, { rpcStatus: "ABORTED" });
      sendJson(res, 200, next);
      return true;
    },
  };
}
