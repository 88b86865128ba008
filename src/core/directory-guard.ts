import { type Stats, lstatSync, mkdirSync } from "node:fs";
import { lstat, mkdir } from "node:fs/promises";
import path from "node:path";
import { UnsafeNameError } from "./errors.ts";
import { RecentSet } from "./recent-set.ts";

/**
 * `path.join(dir, seg)` for a checked name segment (no `/`, `.`, `..` or empty one), without the
 * normalisation pass: the guard builds two or three of these per file.
 */
export function childOf(dir: string, seg: string): string {
  return dir.endsWith(path.sep) ? dir + seg : `${dir}${path.sep}${seg}`;
}

/**
 * Remembers directories already verified to be real directories (not symlinks) inside a root,
 * so that a mirror of 10,000 files does not lstat the same parents 10,000 times.
 */
export class DirectoryGuard {
  readonly root: string;
  /** Directories made or checked (bounded: memory flat in the object count; a forgotten one is re-checked). */
  readonly #verified = new RecentSet<string>(4096);
  constructor(root: string) {
    this.root = path.resolve(root);
  }

  /**
   * Creates (if needed) every directory of `segments` below the root, refusing any component that
   * exists as a symlink or a non-directory.
   * @param remoteName reported in errors
   */
  async ensure(segments: readonly string[], remoteName: string): Promise<string> {
    // The root itself is the user's choice (trusted): create it if needed.
    if (!this.#verified.has(this.root)) {
      await mkdir(this.root, { recursive: true });
      this.#verified.add(this.root);
    }
    let dir = this.root;
    for (const seg of segments) {
      dir = childOf(dir, seg);
      if (this.#verified.has(dir)) continue;
      // mkdir first: in a fresh mirror nearly every directory is new, and a directory we just
      // created cannot be a symlink. Only an existing entry needs the lstat check.
      const made = await mkdir(dir).then(
        () => true,
        (e: NodeJS.ErrnoException) => (e.code === "EEXIST" ? false : Promise.reject(e)),
      );
      if (!made) this.#refuseUnlessDirectory(dir, await lstat(dir), remoteName);
      this.#verified.add(dir);
    }
    return dir;
  }

  /**
   * `ensure` with synchronous syscalls: for small files a mkdir/lstat costs less than the
   * promise and thread-pool round trip around it (measured in the mirror's profile).
   */
  ensureSync(segments: readonly string[], remoteName: string): string {
    if (!this.#verified.has(this.root)) {
      mkdirSync(this.root, { recursive: true });
      this.#verified.add(this.root);
    }
    let dir = this.root;
    for (const seg of segments) {
      dir = childOf(dir, seg);
      if (this.#verified.has(dir)) continue;
      try {
        mkdirSync(dir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        this.#refuseUnlessDirectory(dir, lstatSync(dir), remoteName);
      }
      this.#verified.add(dir);
    }
    return dir;
  }

  /**
   * Whether every directory of `segments` below the root already exists as a real directory,
   * without creating any: false as soon as one is missing, a symlink or not a directory (the
   * write path then creates it or refuses it, with `ensure`). What it finds is remembered like
   * what `ensure` made, in the same bounded set.
   */
  existsSync(segments: readonly string[]): boolean {
    let dir = this.root;
    for (const seg of segments) {
      dir = childOf(dir, seg);
      if (this.#verified.has(dir)) continue;
      const st = lstatSync(dir, { throwIfNoEntry: false });
      if (st === undefined || !st.isDirectory()) return false;
      this.#verified.add(dir);
    }
    return true;
  }

  /** An existing component must be a real directory: a symlink or a file there is refused. */
  #refuseUnlessDirectory(dir: string, st: Stats, remoteName: string): void {
    if (st.isSymbolicLink())
      throw new UnsafeNameError(
        remoteName,
        `'${path.relative(this.root, dir)}' is a symlink in the destination; refusing to follow it`,
      );
    if (!st.isDirectory())
      throw new UnsafeNameError(
        remoteName,
        `'${path.relative(this.root, dir)}' exists as a file, so it cannot also be a directory`,
      );
  }
}
