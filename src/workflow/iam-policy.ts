/**
 * Pure IAM policy edits for the export's service agent (DESIGN §4): add a member to the
 * unconditional binding of a role, creating it if absent, never touching any other binding,
 * member, condition or field.
 */

export interface PolicyBinding {
  role: string;
  members?: string[];
  condition?: unknown;
  [extra: string]: unknown;
}
export interface Policy {
  etag?: string;
  version?: number;
  bindings?: PolicyBinding[];
  [extra: string]: unknown;
}

/** The role the Healthcare service agent needs on the destination bucket (objectCreator cannot overwrite). */
export const EXPORT_ROLE = "roles/storage.objectAdmin";

/** Roles that include what EXPORT_ROLE grants, unconditionally. */
const SATISFYING_ROLES = new Set([EXPORT_ROLE, "roles/storage.admin"]);

/** Whether `member` (e.g. `serviceAccount:…`) holds the export role (or a superset) without a condition. */
export function hasExportRole(policy: Policy, member: string): boolean {
  return (policy.bindings ?? []).some(
    (b) => SATISFYING_ROLES.has(b.role) && b.condition === undefined && (b.members ?? []).includes(member),
  );
}

/**
 * Returns a copy of `policy` in which `member` holds `role` unconditionally, and whether anything
 * changed. Other bindings (including conditional ones for the same role) are kept as they were.
 */
export function withMemberInRole(policy: Policy, role: string, member: string): { policy: Policy; changed: boolean } {
  const bindings = policy.bindings ?? [];
  const index = bindings.findIndex((b) => b.role === role && b.condition === undefined);
  if (index >= 0 && (bindings[index]!.members ?? []).includes(member)) return { policy, changed: false };
  const next = structuredClone(policy);
  next.bindings = structuredClone(bindings);
  if (index >= 0) next.bindings[index]!.members = [...(next.bindings[index]!.members ?? []), member];
  else next.bindings.push({ role, members: [member] });
  // Conditions anywhere require version 3; never downgrade.
  if (next.bindings.some((b) => b.condition !== undefined)) next.version = Math.max(3, next.version ?? 1);
  return { policy: next, changed: true };
}

/** `service-N@gcp-sa-healthcare.iam.gserviceaccount.com` → `serviceAccount:service-N@…` */
export function memberOf(serviceAgent: string): string {
  return serviceAgent.startsWith("serviceAccount:") ? serviceAgent : `serviceAccount:${serviceAgent}`;
}
