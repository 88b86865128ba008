import { backoffDelay, type BackoffPolicy } from "../core/backoff.ts";
import { systemClock, type Clock } from "../core/clock.ts";
import { PermissionError } from "../core/errors.ts";
import type { BigQueryAdmin, DatasetAccessEntry } from "../gcp/bigquery.ts";
import { memberOf, withMemberInRole, type Policy } from "./iam-policy.ts";

/**
 * The Healthcare service agent's access to a BigQuery destination (issue #12 part 5): a DICOM
 * export into `bq://P.D.T` needs `roles/bigquery.dataEditor` (write the table) and
 * `roles/bigquery.jobUser` (run the load job) for the store project's service agent.
 *
 * Where: the **project** policy of P. `jobUser` can only be granted on a project (jobs belong to
 * projects, not datasets), so the project policy must be edited anyway; granting `dataEditor`
 * there too keeps the grant to one etag read-modify-write and matches Google's how-to. A
 * `dataEditor` the user gave on the dataset instead (a WRITER/OWNER access entry) is accepted by
 * the check, so a least-privilege setup is never overridden.
 */
export const BIGQUERY_DATA_ROLE = "roles/bigquery.dataEditor";
export const BIGQUERY_JOB_ROLE = "roles/bigquery.jobUser";
export const BIGQUERY_ROLES = [BIGQUERY_DATA_ROLE, BIGQUERY_JOB_ROLE] as const;

/** Roles that include what each needed role grants (unconditionally). */
const SATISFIES: Record<(typeof BIGQUERY_ROLES)[number], ReadonlySet<string>> = {
  [BIGQUERY_DATA_ROLE]: new Set([
    BIGQUERY_DATA_ROLE,
    "roles/bigquery.dataOwner",
    "roles/bigquery.admin",
    "roles/editor",
    "roles/owner",
  ]),
  [BIGQUERY_JOB_ROLE]: new Set([
    BIGQUERY_JOB_ROLE,
    "roles/bigquery.user",
    "roles/bigquery.admin",
    "roles/editor",
    "roles/owner",
  ]),
};

/**
 * The needed roles `member` lacks, given the project policy and (if the dataset exists) its
 * access entries. Conditional bindings do not count: whether they apply cannot be known here. Pure.
 */
export function missingBigQueryRoles(
  policy: Policy,
  member: string,
  access: readonly DatasetAccessEntry[] = [],
): string[] {
  const email = member.replace(/^serviceAccount:/, "");
  return BIGQUERY_ROLES.filter((role) => {
    const onProject = (policy.bindings ?? []).some(
      (b) => SATISFIES[role].has(b.role) && b.condition === undefined && (b.members ?? []).includes(member),
    );
    const onDataset =
      role === BIGQUERY_DATA_ROLE &&
      access.some(
        (e) =>
          (e.role === "WRITER" ||
            e.role === "OWNER" ||
            e.role === BIGQUERY_DATA_ROLE ||
            e.role === "roles/bigquery.dataOwner") &&
          e["condition"] === undefined &&
          (e.userByEmail === email || e.iamMember === member),
      );
    return !onProject && !onDataset;
  });
}

/**
 * A copy of `policy` in which `member` holds each of `roles` unconditionally (added to the role's
 * unconditional binding, created if absent). Every other binding, member, condition and field is
 * kept as it was. Pure.
 */
export function withBigQueryRoles(
  policy: Policy,
  member: string,
  roles: readonly string[],
): { policy: Policy; changed: boolean } {
  let next = policy;
  let changed = false;
  for (const role of roles) {
    const r = withMemberInRole(next, role, member);
    next = r.policy;
    changed ||= r.changed;
  }
  return { policy: next, changed };
}

export interface BigQueryAccessTarget {
  readonly project: string;
  readonly dataset: string;
  /** `service-N@gcp-sa-healthcare.iam.gserviceaccount.com` of the project that owns the DICOM store. */
  readonly serviceAgent: string;
}

/** The exit-3 error with the fix, for roles the agent lacks. */
export function missingRolesError(t: BigQueryAccessTarget, missing: readonly string[]): PermissionError {
  const member = memberOf(t.serviceAgent);
  const grants = missing
    .map((r) => `gcloud projects add-iam-policy-binding ${t.project} --member=${member} --role=${r}`)
    .join(" && ");
  return new PermissionError(
    `bq://${t.project}.${t.dataset}: ${t.serviceAgent} lacks ${missing.join(" and ")} on project ${t.project}, so the export would fail with PERMISSION_DENIED`,
    { hint: `pass --grant-iam (hcexport edits the project policy, keeping every other binding), or run: ${grants}` },
  );
}

/** Reads the project policy and the dataset's access; returns the missing roles ([] = ready). */
export async function checkBigQueryAccess(admin: BigQueryAdmin, t: BigQueryAccessTarget): Promise<string[]> {
  const [policy, dataset] = await Promise.all([
    admin.getProjectPolicy(t.project),
    admin.getDataset(t.project, t.dataset),
  ]);
  return missingBigQueryRoles(policy, memberOf(t.serviceAgent), dataset?.access ?? []);
}

export interface GrantOptions {
  readonly attempts?: number;
  readonly backoff?: BackoffPolicy;
  readonly clock?: Clock;
}

const GRANT_BACKOFF: BackoffPolicy = { initialMs: 50, maxMs: 2000, multiplier: 2, jitter: "full" };

/**
 * Ensures the agent holds both roles: without `grant`, throws the exit-3 error with the fix; with
 * it, adds what is missing to the project policy by etag read-modify-write, retried (jittered
 * backoff) when someone else changed the policy meanwhile (409 ABORTED from Resource Manager,
 * 412 elsewhere). Returns the roles it granted ([] when nothing was needed).
 */
export async function grantBigQueryAccess(
  admin: BigQueryAdmin,
  t: BigQueryAccessTarget,
  grant: boolean,
  options: GrantOptions = {},
): Promise<string[]> {
  const member = memberOf(t.serviceAgent);
  const attempts = options.attempts ?? 20;
  const dataset = await admin.getDataset(t.project, t.dataset);
  for (let attempt = 1; ; attempt++) {
    const policy = await admin.getProjectPolicy(t.project);
    const missing = missingBigQueryRoles(policy, member, dataset?.access ?? []);
    if (missing.length === 0) return [];
    if (!grant) throw missingRolesError(t, missing);
    const { policy: next } = withBigQueryRoles(policy, member, missing);
    try {
      await admin.setProjectPolicy(t.project, next);
      return missing;
    } catch (err) {
      const status = (err as { status?: number }).status;
      if ((status !== 409 && status !== 412) || attempt >= attempts) throw err;
      await (options.clock ?? systemClock).sleep(backoffDelay(attempt, options.backoff ?? GRANT_BACKOFF));
    }
  }
}
