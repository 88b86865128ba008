/**
 * `hcexport doctor`: independent, read-only checks of everything a run needs — credentials,
 * endpoints, the bucket and the caller's permissions on it, the caller's permissions on each
 * store, and the source project's Healthcare service agent binding on the bucket. Pure logic over
 * injected ports (no I/O here): each check yields ok / warn / fail / skip with a detail and a fix,
 * one failing check never stops the others, and every check has its own deadline.
 */
import { redactSecrets } from "../core/redact.ts";
import { systemClock, type Clock } from "../core/clock.ts";
import { CREDENTIALS_HINT, ExitCode } from "../core/errors.ts";
import { EXPORT_ROLE, hasExportRole, memberOf, type Policy } from "./iam-policy.ts";

export type CheckStatus = "ok" | "warn" | "fail" | "skip";

/** Why a check failed; decides the exit code (see {@link doctorVerdict}). */
export type FailureKind = "permission" | "unreachable" | "config" | "error";

export interface CheckResult {
  /** Stable id, e.g. `endpoint.storage`, `bucket.permissions`, `store:projects/…`. */
  readonly id: string;
  readonly name: string;
  readonly status: CheckStatus;
  readonly detail: string;
  /** How to fix it (fail/warn only). */
  readonly hint?: string;
  /** Why it failed (set on `fail`). */
  readonly reason?: FailureKind;
  readonly durationMs: number;
}

/** What doctor checks: the resolved config of one run. */
export interface DoctorSpec {
  readonly endpoints: {
    readonly storage: string;
    readonly healthcare: string;
    readonly resourceManager: string;
    readonly anonymous: boolean;
  };
  readonly project: string;
  readonly bucket: string;
  readonly grantIam: boolean;
  /** True when the config names the service agent (Resource Manager is then not needed). */
  readonly serviceAgentConfigured: boolean;
  readonly dicomStores: readonly string[];
  readonly fhirStore?: string | undefined;
}

/**
 * The read-only calls doctor makes (adapters in the CLI; fakes in unit tests). Rejections carry
 * an HTTP `status` (or `exitCode` 3 for permission problems) where there is one.
 */
export interface DoctorPorts {
  /** The kind of credential in use, after obtaining a token with it. Never returns the secret. */
  credentials(signal: AbortSignal): Promise<{ readonly kind: string }>;
  /** Any HTTP answer resolves with its status; a connection error or timeout rejects. */
  probe(url: string, signal: AbortSignal): Promise<{ readonly status: number }>;
  /** The bucket's metadata, or undefined when it does not exist (404). */
  getBucket(bucket: string, signal: AbortSignal): Promise<{ readonly location?: string } | undefined>;
  /** `GET /storage/v1/b/B/iam/testPermissions`: the subset of `permissions` the caller holds. */
  testBucketPermissions(
    bucket: string,
    permissions: readonly string[],
    signal: AbortSignal,
  ): Promise<readonly string[]>;
  /** `POST {store}:testIamPermissions`: the subset of `permissions` the caller holds. */
  testStorePermissions(store: string, permissions: readonly string[], signal: AbortSignal): Promise<readonly string[]>;
  getBucketPolicy(bucket: string, signal: AbortSignal): Promise<Policy>;
  /** The source project's Healthcare service agent (config, else Resource Manager). */
  serviceAgent(signal: AbortSignal): Promise<string>;
}

export type DoctorEvent = { readonly kind: "doctor.check" } & CheckResult;

export interface DoctorOptions {
  /** Per-check deadline (default 10 s). */
  readonly timeoutMs?: number;
  readonly onEvent?: (event: DoctorEvent) => void;
  readonly clock?: Clock;
}

/** What a check's body returns; the runner adds id, name and duration. */
export interface Outcome {
  readonly status: CheckStatus;
  readonly detail: string;
  readonly hint?: string;
  readonly reason?: FailureKind;
}

/** One check: `needs` names earlier checks that must not have failed (else this one is skipped). */
export interface Check {
  readonly id: string;
  readonly name: string;
  readonly needs: readonly string[];
  run(signal: AbortSignal): Promise<Outcome>;
}

/** Bucket permissions `run` and `mirror` need, and the one only `--grant-iam` needs. */
export const BUCKET_PERMISSIONS = [
  "storage.buckets.get",
  "storage.buckets.getIamPolicy",
  "storage.buckets.setIamPolicy",
  "storage.objects.list",
  "storage.objects.get",
] as const;
const GRANT_ONLY = "storage.buckets.setIamPolicy";

/** Store permissions; only `export` is indispensable for `run`. */
export const DICOM_STORE_PERMISSIONS = [
  "healthcare.dicomStores.export",
  "healthcare.dicomStores.get",
  "healthcare.dicomStores.dicomWebRead",
] as const;
const DICOM_REQUIRED = "healthcare.dicomStores.export";
const DICOM_OPTIONAL_USE: Record<string, string> = {
  "healthcare.dicomStores.get": "reading the store's metadata",
  "healthcare.dicomStores.dicomWebRead": "'hcexport dicomweb pull' (direct DICOMweb download)",
};
export const FHIR_STORE_PERMISSIONS = ["healthcare.fhirResources.get"] as const;

const DEFAULT_TIMEOUT_MS = 10_000;

/** The checks for one config, in display order. */
export function doctorChecks(spec: DoctorSpec, ports: DoctorPorts): Check[] {
  const { endpoints } = spec;
  const b = spec.bucket;
  const checks: Check[] = [
    {
      id: "credentials",
      name: "credentials",
      needs: [],
      async run(signal) {
        if (endpoints.anonymous)
          return { status: "ok", detail: "anonymous (local cloud): no credentials are looked up or sent" };
        try {
          const { kind } = await ports.credentials(signal);
          return { status: "ok", detail: `${kind}; an access token was obtained` };
        } catch (err) {
          return {
            status: "fail",
            reason: "permission",
            detail: safeMessage(err).replace(
              /^(?!no (?:usable )?Google credentials)/,
              "no usable Google credentials: ",
            ),
            hint: CREDENTIALS_HINT,
          };
        }
      },
    },
    endpointCheck("storage", "Cloud Storage", endpoints.storage, "--storage-endpoint", ports, false),
    endpointCheck("healthcare", "Healthcare API", endpoints.healthcare, "--healthcare-endpoint", ports, false),
    // Resource Manager only serves the project-number lookup, needless when the config names the service agent.
    endpointCheck(
      "resourceManager",
      "Resource Manager",
      endpoints.resourceManager,
      "--resource-manager-endpoint",
      ports,
      spec.serviceAgentConfigured,
    ),
    {
      id: "bucket",
      name: `bucket gs://${b}`,
      needs: ["credentials", "endpoint.storage"],
      async run(signal) {
        try {
          const meta = await ports.getBucket(b, signal);
          if (meta === undefined) {
            return {
              status: "warn",
              detail: `gs://${b} does not exist yet; 'run' creates it in project ${spec.project} (needs storage.buckets.create there)`,
              hint: `or create it now: hcexport bucket ensure gs://${b} --project ${spec.project}`,
            };
          }
          return {
            status: "ok",
            detail: `gs://${b} exists${meta.location === undefined ? "" : ` (${meta.location})`}`,
          };
        } catch (err) {
          if (isPermission(err)) {
            return {
              status: "fail",
              reason: "permission",
              detail: `cannot read gs://${b} (${statusText(err)}): the name belongs to someone else, or you lack storage.buckets.get on it`,
              hint: "bucket names are global: choose another name in the config, or ask the bucket's owner for roles/storage.admin on it",
            };
          }
          throw err;
        }
      },
    },
    {
      id: "bucket.permissions",
      name: `your permissions on gs://${b}`,
      needs: ["credentials", "endpoint.storage"],
      async run(signal) {
        let granted: readonly string[];
        try {
          granted = await ports.testBucketPermissions(b, BUCKET_PERMISSIONS, signal);
        } catch (err) {
          if (statusOf(err) === 404) return { status: "skip", detail: `gs://${b} does not exist yet` };
          throw err;
        }
        const missing = BUCKET_PERMISSIONS.filter((p) => !granted.includes(p));
        const needed = missing.filter((p) => p !== GRANT_ONLY);
        if (needed.length > 0) {
          return {
            status: "fail",
            reason: "permission",
            detail: `missing ${needed.join(", ")}${missing.includes(GRANT_ONLY) ? ` (and ${GRANT_ONLY})` : ""}; granted: ${granted.length === 0 ? "none" : granted.join(", ")}`,
            hint: `ask the bucket's owner for roles/storage.admin on gs://${b} (or roles/storage.objectViewer plus roles/storage.legacyBucketReader to mirror only)`,
          };
        }
        if (missing.length > 0) {
          return {
            status: "warn",
            detail: `${GRANT_ONLY} missing: needed only to grant the service agent (--grant-iam / grantIam)${spec.grantIam ? "; the config sets grantIam, so 'run' fails if the binding is missing" : ""}`,
            hint: `have someone with roles/storage.admin run 'hcexport iam grant gs://${b} --service-agent …' once`,
          };
        }
        return { status: "ok", detail: `all ${BUCKET_PERMISSIONS.length} granted: ${BUCKET_PERMISSIONS.join(", ")}` };
      },
    },
  ];
  for (const store of new Set(spec.dicomStores))
    checks.push(storeCheck(store, "DICOM store", DICOM_STORE_PERMISSIONS, ports));
  if (spec.fhirStore !== undefined)
    checks.push(storeCheck(spec.fhirStore, "FHIR store", FHIR_STORE_PERMISSIONS, ports));
  checks.push({
    id: "service-agent",
    name: `service agent binding on gs://${b}`,
    needs: ["credentials", "endpoint.storage", ...(spec.serviceAgentConfigured ? [] : ["endpoint.resourceManager"])],
    async run(signal) {
      const agent = await ports.serviceAgent(signal);
      const fix = `run 'hcexport iam grant gs://${b} --service-agent ${agent}' or pass --grant-iam`;
      let policy: Policy;
      try {
        policy = await ports.getBucketPolicy(b, signal);
      } catch (err) {
        if (statusOf(err) === 404) {
          if (spec.grantIam)
            return {
              status: "warn",
              detail: `gs://${b} does not exist yet; 'run' creates it and grants ${agent} ${EXPORT_ROLE} (grantIam)`,
            };
          return {
            status: "fail",
            reason: "permission",
            detail: `gs://${b} does not exist yet, and once 'run' creates it ${agent} will lack ${EXPORT_ROLE}, so the export would fail`,
            hint: `set "grantIam": true in the config or pass --grant-iam (or: hcexport bucket ensure gs://${b} --project ${spec.project}, then ${fix.replace(/ or pass --grant-iam$/, "")})`,
          };
        }
        if (isPermission(err)) {
          return {
            status: "fail",
            reason: "permission",
            detail: `cannot read the IAM policy of gs://${b} (${statusText(err)}), so the binding cannot be checked`,
            hint: "you need storage.buckets.getIamPolicy on the bucket (e.g. roles/storage.admin)",
          };
        }
        throw err;
      }
      if (hasExportRole(policy, memberOf(agent)))
        return { status: "ok", detail: `${agent} holds ${EXPORT_ROLE} on gs://${b}` };
      if (spec.grantIam)
        return { status: "warn", detail: `${agent} lacks ${EXPORT_ROLE} on gs://${b}; 'run' grants it (grantIam)` };
      return {
        status: "fail",
        reason: "permission",
        detail: `gs://${b}: ${agent} lacks ${EXPORT_ROLE}, so the export would fail with PERMISSION_DENIED (objectCreator is not enough: exports overwrite objects)`,
        hint: fix,
      };
    },
  });
  return checks;
}

/** A cheap GET of the endpoint's root: any HTTP answer (even 401/403/404) means reachable. */
function endpointCheck(
  key: "storage" | "healthcare" | "resourceManager",
  label: string,
  base: string,
  flag: string,
  ports: DoctorPorts,
  optional: boolean,
): Check {
  const url = `${base.replace(/\/+$/, "")}/`;
  return {
    id: `endpoint.${key}`,
    name: `${label} endpoint`,
    needs: [],
    async run(signal) {
      try {
        const { status } = await ports.probe(url, signal);
        return { status: "ok", detail: `${base} reachable (HTTP ${status})` };
      } catch (err) {
        const detail = `cannot reach ${base}: ${safeMessage(err)}`;
        if (optional) return { status: "warn", detail: `${detail} (not needed: the config names serviceAgent)` };
        return {
          status: "fail",
          reason: "unreachable",
          detail,
          hint: `check the network, proxy and firewall, or the ${flag} / --emulator URL`,
        };
      }
    },
  };
}

function storeCheck(store: string, label: string, permissions: readonly string[], ports: DoctorPorts): Check {
  return {
    id: `store:${store}`,
    name: `${label} ${shortStore(store)}`,
    needs: ["credentials", "endpoint.healthcare"],
    async run(signal) {
      let granted: readonly string[];
      try {
        granted = await ports.testStorePermissions(store, permissions, signal);
      } catch (err) {
        if (statusOf(err) === 404)
          return {
            status: "fail",
            reason: "config",
            detail: `${store} not found: ${safeMessage(err)}`,
            hint: "check the store name in the config (projects/P/locations/L/datasets/D/dicomStores/S)",
          };
        throw err;
      }
      const missing = permissions.filter((p) => !granted.includes(p));
      if (missing.length === 0)
        return {
          status: "ok",
          detail: `${permissions.length === 1 ? "granted" : `all ${permissions.length} granted`}: ${permissions.join(", ")}`,
        };
      // testIamPermissions answers an empty set, not NOT_FOUND, for a store that does not exist.
      if (granted.length === 0) {
        return {
          status: "fail",
          reason: "permission",
          detail: `none of ${permissions.join(", ")} granted on ${store}: the store does not exist, or your account has no access to it`,
          hint: `check the store name; ask its owner for ${label === "FHIR store" ? "roles/healthcare.fhirResourceReader" : "roles/healthcare.dicomStoreAdmin (it includes healthcare.dicomStores.export)"}`,
        };
      }
      const required = label === "FHIR store" ? missing : missing.filter((p) => p === DICOM_REQUIRED);
      if (required.length > 0) {
        return {
          status: "fail",
          reason: "permission",
          detail: `missing ${required.join(", ")} on ${store}; granted: ${granted.join(", ")}`,
          hint: "ask the store's owner for a role that includes it (e.g. roles/healthcare.dicomStoreAdmin)",
        };
      }
      return {
        status: "warn",
        detail: `missing ${missing.map((p) => `${p} (needed only for ${DICOM_OPTIONAL_USE[p] ?? "other commands"})`).join(", ")}; 'run' does not need it`,
      };
    },
  };
}

/**
 * Runs the checks, each once its `needs` have finished: a need that failed or was skipped makes
 * the check a `skip` naming it; a check that throws or passes its deadline is a `fail`. Results
 * come back in declaration order.
 */
export async function runChecks(checks: readonly Check[], options: DoctorOptions = {}): Promise<CheckResult[]> {
  const clock = options.clock ?? systemClock;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const byId = new Map<string, Promise<CheckResult>>();
  const names = new Map(checks.map((c) => [c.id, c.name]));
  for (const check of checks) {
    const needs = check.needs.map((id) => {
      const p = byId.get(id);
      if (p === undefined) throw new Error(`doctor check ${check.id} needs ${id}, which is not an earlier check`);
      return p;
    });
    byId.set(
      check.id,
      (async (): Promise<CheckResult> => {
        const deps = await Promise.all(needs);
        const blocked = deps.find((d) => d.status === "fail" || d.status === "skip");
        const started = clock.now();
        let outcome: Outcome;
        if (blocked !== undefined) {
          outcome = {
            status: "skip",
            detail: `skipped: ${names.get(blocked.id) ?? blocked.id} ${blocked.status === "fail" ? "failed" : "was skipped"}`,
          };
        } else {
          outcome = await withDeadline(check, timeoutMs, clock).catch((err: unknown) => failure(err, timeoutMs));
        }
        const result: CheckResult = {
          id: check.id,
          name: check.name,
          ...outcome,
          durationMs: Math.max(0, clock.now() - started),
        };
        options.onEvent?.({ kind: "doctor.check", ...result });
        return result;
      })(),
    );
  }
  return Promise.all(checks.map((c) => byId.get(c.id)!));
}

/** All the checks for a config (see {@link doctorChecks}). */
export function runDoctor(spec: DoctorSpec, ports: DoctorPorts, options: DoctorOptions = {}): Promise<CheckResult[]> {
  return runChecks(doctorChecks(spec, ports), options);
}

class DeadlineError extends Error {}

async function withDeadline(check: Check, ms: number, clock: Clock): Promise<Outcome> {
  const work = new AbortController();
  const timer = new AbortController();
  const deadline = clock.sleep(ms, timer.signal).then(
    () => {
      work.abort(new DeadlineError(`timed out after ${formatMs(ms)}`));
      throw new DeadlineError(`timed out after ${formatMs(ms)}`);
    },
    () => new Promise<never>(() => {}),
  );
  try {
    return await Promise.race([check.run(work.signal), deadline]);
  } finally {
    timer.abort();
  }
}

function failure(err: unknown, timeoutMs: number): Outcome {
  if (err instanceof DeadlineError)
    return {
      status: "fail",
      reason: "unreachable",
      detail: err.message,
      hint: `no answer within ${formatMs(timeoutMs)}: check the network and proxy`,
    };
  const hint = typeof (err as { hint?: unknown })?.hint === "string" ? (err as { hint: string }).hint : undefined;
  const reason: FailureKind = isPermission(err)
    ? "permission"
    : statusOf(err) === 404 || (err as { exitCode?: unknown })?.exitCode === ExitCode.Usage
      ? "config"
      : "error";
  return { status: "fail", reason, detail: safeMessage(err), ...(hint === undefined ? {} : { hint }) };
}

/** The overall outcome: exit 0 without failures; else 1 (unreachable/unexpected) > 2 (config) > 3 (permissions). */
export function doctorVerdict(results: readonly CheckResult[]): {
  ok: boolean;
  exitCode: ExitCode;
  failed: CheckResult[];
  warned: CheckResult[];
  summary: string;
} {
  const failed = results.filter((r) => r.status === "fail");
  const warned = results.filter((r) => r.status === "warn");
  const kinds = new Set(failed.map((r) => r.reason ?? "error"));
  const exitCode =
    failed.length === 0
      ? ExitCode.Ok
      : kinds.has("unreachable") || kinds.has("error")
        ? ExitCode.Failure
        : kinds.has("config")
          ? ExitCode.Usage
          : ExitCode.Permission;
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
  const skipped = results.filter((r) => r.status === "skip").length;
  const summary =
    failed.length === 0
      ? `all is well: ${count(results.length - warned.length - skipped, "check")} ok${warned.length > 0 ? `, ${count(warned.length, "warning")}` : ""}`
      : `${count(failed.length, "check")} failed: ${failed.map((r) => r.name).join("; ")}${skipped > 0 ? ` (${skipped} skipped)` : ""}`;
  return { ok: failed.length === 0, exitCode, failed, warned, summary };
}

function statusOf(err: unknown): number | undefined {
  const s =
    (err as { status?: unknown; code?: unknown } | null | undefined)?.status ??
    (err as { code?: unknown } | null | undefined)?.code;
  return typeof s === "number" ? s : undefined;
}

function isPermission(err: unknown): boolean {
  const s = statusOf(err);
  return s === 401 || s === 403 || (err as { exitCode?: unknown } | null | undefined)?.exitCode === ExitCode.Permission;
}

function statusText(err: unknown): string {
  const s = statusOf(err);
  return s === undefined ? "permission denied" : `HTTP ${s}`;
}

/** An error's message with anything that looks like a credential masked (defence in depth). */
export function safeMessage(err: unknown): string {
  return redactSecrets(err instanceof Error ? err.message : String(err));
}

function shortStore(store: string): string {
  return store.replace(/^projects\/[^/]+\/locations\/[^/]+\/datasets\/([^/]+)\/(?:dicomStores|fhirStores)\//, "$1/");
}

function formatMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)} s` : `${ms} ms`;
}
