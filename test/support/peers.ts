import { accessSync, constants } from "node:fs";
import path from "node:path";

/** The absolute path of an executable on PATH, or undefined. */
export function which(command: string): string | undefined {
  for (const dir of (process.env["PATH"] ?? "").split(path.delimiter)) {
    const candidate = path.join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * For interop tests: whether a real peer (rclone, gcloud, Orthanc, dcmtk) is installed. Missing
 * peers skip the test with a loud message on a developer machine, and fail it in CI (env CI set),
 * where .ci/run installs them.
 */
export function peer(command: string): { skip: string | false; path?: string } {
  const found = which(command);
  if (found !== undefined) return { skip: false, path: found };
  const message = `${command} is not installed: interop test SKIPPED (install it: see .ci/run)`;
  if (process.env["CI"]) throw new Error(`${command} is required in CI but is not installed`);
  process.stderr.write(`\n!!! ${message}\n`);
  return { skip: message };
}
