import type { AccessEntry } from "./model.ts";

/**
 * What the Healthcare service agent must hold to export into a BigQuery table: write access to the
 * dataset (`roles/bigquery.dataEditor`, on the project or as a WRITER/OWNER access entry of the
 * dataset) and the right to run jobs (`roles/bigquery.jobUser`, which exists only on projects).
 * Supersets count (dataOwner, admin, the basic roles editor/owner; bigquery.user can run jobs).
 * Conditional bindings are not trusted: the local cloud does not evaluate conditions.
 */
export const DATA_ROLES = new Set([
  "roles/bigquery.dataEditor",
  "roles/bigquery.dataOwner",
  "roles/bigquery.admin",
  "roles/editor",
  "roles/owner",
]);
export const JOB_ROLES = new Set([
  "roles/bigquery.jobUser",
  "roles/bigquery.user",
  "roles/bigquery.admin",
  "roles/editor",
  "roles/owner",
]);

interface Bindings {
  readonly bindings?: readonly { role: string; members?: readonly string[]; condition?: unknown }[];
}

/** The roles `member` lacks for an export into `access`'s dataset, by their canonical names ([] when it may export). */
export function missingExportRoles(policy: Bindings, access: readonly AccessEntry[], member: string): string[] {
  const holds = (roles: Set<string>) =>
    (policy.bindings ?? []).some(
      (b) => roles.has(b.role) && b.condition === undefined && (b.members ?? []).includes(member),
    );
  const email = member.replace(/^serviceAccount:/, "");
  const datasetWriter = access.some(
    (e) =>
      (e.role === "WRITER" || e.role === "OWNER") &&
      e.condition === undefined &&
      (e.userByEmail === email || e.iamMember === member),
  );
  const missing: string[] = [];
  if (!holds(DATA_ROLES) && !datasetWriter) missing.push("roles/bigquery.dataEditor");
  if (!holds(JOB_ROLES)) missing.push("roles/bigquery.jobUser");
  return missing;
}
