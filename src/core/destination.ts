import { constants } from "node:fs";
import { access, mkdir } from "node:fs/promises";
import { destinationFault } from "./errors.ts";

/**
 * Whether `dir` (created if missing) can take files. A read-only file system is reported as
 * EROFS here, up front, instead of as whatever the first nested mkdir happens to say (Node's
 * recursive mkdir reports ENOENT on a read-only mount). Other errors are thrown as they are.
 */
export async function destinationProblem(dir: string): Promise<string | undefined> {
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK);
    return undefined;
  } catch (err) {
    const fault = destinationFault(err);
    if (fault === undefined) throw err;
    return fault;
  }
}
