import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Manifest } from "../../src/mirror/manifest.ts";

/** Runs `fn` with a fresh destination directory and its open manifest; closes and removes both after. */
export async function withManifestDest(
  prefix: string,
  fn: (dest: string, m: Manifest) => Promise<void>,
): Promise<void> {
  const dest = await mkdtemp(path.join(os.tmpdir(), prefix));
  const m = Manifest.open(dest);
  try {
    await fn(dest, m);
  } finally {
    m.close();
    await rm(dest, { recursive: true, force: true });
  }
}
