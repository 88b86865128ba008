import { execFileSync } from "node:child_process";

/**
 * For interop tests: whether a real peer (rclone, gcloud, Orthanc, dcmtk) is installed. Missing
 * peers skip the test with a loud message on a developer machine, and fail it in CI (env CI set),
 * where .ci/run installs them.
 */
export function peer(command: string, versionArgs: string[] = ["--version"]): { skip: string | false } {
  try {
    execFileSync(command, versionArgs, { stdio: "ignore", timeout: 30_000 });
    return { skip: false };
  } catch {
    const message = `${command} is not installed: interop test SKIPPED (install it: see .ci/run)`;
    if (process.env["CI"]) throw new Error(`${command} is required in CI but is not installed`);
    process.stderr.write(`\n!!! ${message}\n`);
    return { skip: message };
  }
}
