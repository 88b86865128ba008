import path from "node:path";
import { hashLocal, statLocal } from "./local-io.ts";
import type { ProbedEntry } from "./local-probe.ts";
import type { LocalEntry } from "./local-walk.ts";
import { manifestEntry, type Manifest, type ManifestEntry } from "./manifest.ts";
import { decide, sameContent, type Accepted } from "./plan.ts";

/** What the check stage found for one listed object. */
export type CheckOutcome =
  | { readonly kind: "refuse"; readonly reason: string }
  /** Proven equal by the manifest and an unchanged stat; `record` when the generation moved (row to update). */
  | { readonly kind: "skip"; readonly record?: ManifestEntry }
  /**
   * Not vouched for by the manifest (e.g. renamed by a run killed before its batch's rows were
   * committed) but hashed equal: skip it, and commit `entry` once a barrier has made it durable.
   */
  | { readonly kind: "proven"; readonly entry: ManifestEntry }
  | { readonly kind: "download"; readonly hashed: boolean };

/**
 * The check stage (rclone's checkers): stat the local file the walk saw (if any; a probe has
 * already), look up its manifest row, decide (plan.ts `decide`), and hash the file when the
 * manifest cannot vouch for it. Reads only; never writes.
 */
export async function check(
  { rel, obj }: Accepted,
  local: LocalEntry | ProbedEntry | undefined,
  dest: string,
  manifest: Manifest,
): Promise<CheckOutcome> {
  const file = () => path.join(dest, rel);
  const state = local === undefined ? undefined : "state" in local ? local.state : await statLocal(file(), local.type);
  const entry = state === undefined ? undefined : manifest.get(rel);
  const d = decide(obj, state, entry);
  if (d.action === "refuse") return { kind: "refuse", reason: d.reason };
  if (d.action === "skip")
    return d.record
      ? { kind: "skip", record: { ...entry!, generation: obj.generation, etag: obj.etag } }
      : { kind: "skip" };
  if (d.action === "download") return { kind: "download", hashed: false };
  const got = await hashLocal(file(), { crc32c: obj.crc32c !== undefined, md5: obj.crc32c === undefined });
  if (got.bytes !== obj.size || !sameContent(obj, got)) return { kind: "download", hashed: true };
  return {
    kind: "proven",
    entry: manifestEntry(rel, obj, state!),
  };
}
