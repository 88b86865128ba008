import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { lstat, mkdir, open, rename, unlink } from "node:fs/promises";
import path from "node:path";
import { IntegrityError, UnsafeNameError } from "./errors.ts";
import { StreamingHasher } from "./hashing.ts";
import { TEMP_MARKER, checkRelativeName, resolveInside } from "./safe-path.ts";

/** What the bytes must be; any field given is verified before the file gets its final name. */
export interface ExpectedContent {
  readonly size?: number;
  /** base64 big-endian CRC32C, as GCS reports it */
  readonly crc32c?: string;
  /** base64 MD5, as GCS reports it */
  readonly md5?: string;
}

export interface WrittenFile {
  readonly path: string;
  readonly bytes: number;
  readonly crc32c?: string;
  readonly md5?: string;
}

/**
 * Remembers directories already verified to be real directories (not symlinks) inside a root,
 * so that a mirror of 10,000 files does not lstat the same parents 10,000 times.
 */
export class DirectoryGuard {
  readonly root: string;
  readonly #verified = new Set<string>();
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
      dir = path.join(dir, seg);
      if (this.#verified.has(dir)) continue;
      const st = await lstat(dir).catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? undefined : Promise.reject(e)));
      if (st === undefined) {
        await mkdir(dir).catch((e: NodeJS.ErrnoException) => (e.code === "EEXIST" ? undefined : Promise.reject(e)));
        const again = await lstat(dir);
        if (!again.isDirectory()) throw new UnsafeNameError(remoteName, `'${path.relative(this.root, dir)}' is not a directory`);
      } else if (st.isSymbolicLink()) {
        throw new UnsafeNameError(remoteName, `'${path.relative(this.root, dir)}' is a symlink in the destination; refusing to follow it`);
      } else if (!st.isDirectory()) {
        throw new UnsafeNameError(remoteName, `'${path.relative(this.root, dir)}' exists as a file, so it cannot also be a directory`);
      }
      this.#verified.add(dir);
    }
    return dir;
  }
}

export interface AtomicWriteOptions {
  readonly expected?: ExpectedContent;
  /** fsync the file before renaming it into place (default true). */
  readonly fsync?: boolean;
  /** Share one guard across many writes into the same root. */
  readonly guard?: DirectoryGuard;
  /** Digests to compute even when not verified (e.g. to record in a manifest). */
  readonly computeCrc32c?: boolean;
  readonly computeMd5?: boolean;
}

/**
 * Streams `body` into `root/relName` atomically: a temp file in the same directory, hashed while
 * written, verified against `expected`, fsynced, then renamed over the final name. On any failure
 * the temp file is removed and nothing appears under the final name. `relName` is untrusted.
 */
export async function writeFileAtomic(
  root: string,
  relName: string,
  body: AsyncIterable<Uint8Array>,
  options: AtomicWriteOptions = {},
): Promise<WrittenFile> {
  const target = resolveInside(root, relName);
  const check = checkRelativeName(relName);
  if (!check.ok) throw new UnsafeNameError(relName, check.reason);
  const guard = options.guard ?? new DirectoryGuard(root);
  const dir = await guard.ensure(check.segments.slice(0, -1), relName);
  const existing = await lstat(target).catch(() => undefined);
  if (existing?.isDirectory()) throw new UnsafeNameError(relName, "exists as a directory in the destination");

  const expected = options.expected ?? {};
  const hasher = new StreamingHasher({
    crc32c: expected.crc32c !== undefined || options.computeCrc32c === true,
    md5: expected.md5 !== undefined || options.computeMd5 === true,
  });
  const temp = path.join(dir, `.${path.basename(target).slice(0, 100)}${TEMP_MARKER}${randomBytes(6).toString("hex")}`);
  const fh = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  let renamed = false;
  try {
    for await (const chunk of body) {
      hasher.update(chunk);
      let off = 0;
      while (off < chunk.byteLength) {
        const { bytesWritten } = await fh.write(chunk, off, chunk.byteLength - off);
        off += bytesWritten;
      }
    }
    const got = hasher.digest();
    if (expected.size !== undefined && got.bytes !== expected.size) {
      throw new IntegrityError(`${relName}: got ${got.bytes} bytes, expected ${expected.size}`);
    }
    if (expected.crc32c !== undefined && got.crc32c !== expected.crc32c) {
      throw new IntegrityError(`${relName}: crc32c ${got.crc32c} does not match the expected ${expected.crc32c}`);
    }
    if (expected.md5 !== undefined && got.md5 !== expected.md5) {
      throw new IntegrityError(`${relName}: md5 ${got.md5} does not match the expected ${expected.md5}`);
    }
    if (options.fsync ?? true) await fh.sync();
    await fh.close();
    try {
      await rename(temp, target);
    } catch (err) {
      // Another name created a directory here meanwhile (objects `a` and `a/b`): a name clash.
      if ((err as NodeJS.ErrnoException).code === "EISDIR") throw new UnsafeNameError(relName, "exists as a directory in the destination");
      throw err;
    }
    renamed = true;
    return { path: target, ...got };
  } finally {
    if (!renamed) {
      await fh.close().catch(() => {});
      await unlink(temp).catch(() => {});
    }
  }
}

/**
 * Atomically replaces a trusted local file (state, manifest, report): temp + fsync + rename +
 * directory fsync, so a crash leaves either the old or the new content, never a mix.
 */
export async function replaceFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true });
  const temp = path.join(dir, `.${path.basename(file)}${TEMP_MARKER}${randomBytes(6).toString("hex")}`);
  const fh = await open(temp, "wx", 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(temp, file);
  } catch (err) {
    await unlink(temp).catch(() => {});
    throw err;
  }
  const dh = await open(dir, "r").catch(() => undefined);
  await dh?.sync().catch(() => {});
  await dh?.close();
}
