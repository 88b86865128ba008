import { execFileSync } from "node:child_process";

/**
 * Bytes of these files held in the page cache, by util-linux's `fincore` (mincore(2) on each
 * file's mapping), or undefined where `fincore` is missing. Read before the files are: reading
 * them fills the cache.
 */
export function residentBytes(files: readonly string[]): number | undefined {
  let out: string;
  try {
    out = execFileSync("fincore", ["--bytes", "--noheadings", "--raw", "--output", "RES", ...files], {
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  return out
    .trim()
    .split("\n")
    .reduce((sum, line) => sum + Number(line), 0);
}
