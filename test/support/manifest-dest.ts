import { Manifest } from "../../src/mirror/manifest.ts";
import { withTempDir } from "./temp-dir.ts";

/** Runs `fn` with a fresh destination directory and its open manifest; closes and removes both after. */
export async function withManifestDest(
  prefix: string,
  fn: (dest: string, m: Manifest) => Promise<void>,
): Promise<void> {
  await withTempDir(prefix, async (dest) => {
    const m = Manifest.open(dest);
    try {
      await fn(dest, m);
    } finally {
      m.close();
    }
  });
}
