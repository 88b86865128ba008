import {
  type BigIntStats,
  closeSync,
  constants,
  fstatSync,
  fsync as fsyncCb,
  ftruncateSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
  writevSync,
} from "node:fs";
import { mkdir, open, readdir, rename, unlink, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { noteWritten } from "./barrier.ts";
import { childOf, DirectoryGuard } from "./directory-guard.ts";
import {
  AlignedScratch,
  createMaybeDirectSync,
  DIRECT_MIN_BYTES,
  directIo,
  DirectRefused,
  writeDirectSync,
} from "./direct-io.ts";
import { IntegrityError, UnsafeNameError } from "./errors.ts";
import { verifyBytes, type ExpectedContent } from "./expected-content.ts";
import { StreamingHasher } from "./hashing.ts";
import { TEMP_MARKER, checkRelativeName, resolveInside } from "./safe-path.ts";
import { tempNameFor, tempWriterGone, writerTag } from "./temp-names.ts";

/** A written file's identity for a manifest (mtime in ms and ns, inode), from its `fstat`. */
export function fileIdentity(st: BigIntStats): Pick<WrittenFile, "mtimeMs" | "mtimeNs" | "ino"> {
  return { mtimeMs: Number(st.mtimeMs), mtimeNs: String(st.mtimeNs), ino: String(st.ino) };
}

export interface WrittenFile {
  readonly path: string;
  readonly bytes: number;
  /** The file's mtime as written (for manifests that detect later local changes). */
  readonly mtimeMs: number;
  /** mtime in ns and inode number (decimal strings): the file's identity for a manifest. */
  readonly mtimeNs: string;
  readonly ino: string;
  readonly crc32c?: string;
  readonly md5?: string;
  /** Written with direct I/O (core/direct-io.ts): it left no dirty pages for a barrier to count. */
  readonly direct?: boolean;
}

export interface AtomicWriteOptions {
  /** Size, CRC32C, MD5 (a header `digest` is not checked here: a streaming caller checks its own). */
  readonly expected?: ExpectedContent;
  /** fsync the file before renaming it into place (default true). */
  readonly fsync?: boolean;
  /** Share one guard across many writes into the same root. */
  readonly guard?: DirectoryGuard;
  /** Digests to compute even when not verified (e.g. to record in a manifest). */
  readonly computeCrc32c?: boolean;
  readonly computeMd5?: boolean;
  /**
   * Abort (IntegrityError, retried by callers) the moment the body exceeds this many bytes; default
   * `expected.size` when given. An endless or lying body never grows the temp file past it.
   */
  readonly maxBytes?: number;
}

/**
 * A verified temp file beside its final name, not yet renamed (see `stageFile`/`stageVerified`):
 * `path` is where it goes, `temp` where it is. Identity (mtime, inode) survives the rename.
 */
export interface StagedFile extends WrittenFile {
  readonly temp: string;
  /** The untrusted relative name, for messages. */
  readonly relName: string;
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
  return renameStaged(await stageFile(root, relName, body, { ...options, fsync: options.fsync ?? true }));
}

/**
 * The first half of `writeFileAtomic`: streams `body` into a fresh temp file beside
 * `root/relName`, hashed while written and verified against `expected`; fsynced only with
 * `fsync: true` (default false: the caller's commit batch holds the barrier). On any failure the
 * temp file is removed. The final name is untouched until `renameStaged`.
 */
export async function stageFile(
  root: string,
  relName: string,
  body: AsyncIterable<Uint8Array>,
  options: AtomicWriteOptions = {},
): Promise<StagedFile> {
  const target = resolveInside(root, relName);
  const check = checkRelativeName(relName);
  if (!check.ok) throw new UnsafeNameError(relName, check.reason);
  const guard = options.guard ?? new DirectoryGuard(root);
  const dir = await guard.ensure(check.segments.slice(0, -1), relName);

  const expected = options.expected ?? {};
  const hasher = new StreamingHasher({
    crc32c: expected.crc32c !== undefined || options.computeCrc32c === true,
    md5: expected.md5 !== undefined || options.computeMd5 === true,
  });
  const temp = path.join(dir, tempNameFor(path.basename(target)));
  const fh = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  let staged = false;
  try {
    // Gather chunks into ~1 MiB writes: one syscall per file for typical DICOM sizes instead of
    // one per network chunk (measured: the per-chunk writes dominated large-object copies).
    let batch: Uint8Array[] = [];
    let batched = 0;
    const flush = async () => {
      if (batched === 0) return;
      const bufs = batch;
      const size = batched;
      batch = [];
      batched = 0;
      await writeAll(fh, bufs);
      noteWritten(size);
    };
    const cap = options.maxBytes ?? expected.size;
    let received = 0;
    for await (const chunk of body) {
      received += chunk.byteLength;
      if (cap !== undefined && received > cap)
        throw new IntegrityError(
          `${relName}: the body is longer than ${expected.size === cap ? "the listed size" : "allowed"} (${cap} bytes); cut off`,
        );
      hasher.update(chunk);
      batch.push(chunk);
      batched += chunk.byteLength;
      if (batched >= WRITE_BATCH) await flush();
    }
    await flush();
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
    if (options.fsync === true) await fh.sync();
    const st = await fh.stat({ bigint: true });
    await fh.close();
    staged = true;
    return {
      path: target,
      temp,
      relName,
      ...fileIdentity(st),
      ...got,
    };
  } finally {
    if (!staged) {
      await fh.close().catch(() => {});
      await unlink(temp).catch(() => {});
    }
  }
}

/**
 * Gives a staged temp file its final name (one rename: atomic). On failure the temp file is
 * removed; a directory under the final name (objects `a` and `a/b`) is a name clash.
 */
export function renameStaged(staged: StagedFile): WrittenFile {
  try {
    renameSync(staged.temp, staged.path);
  } catch (err) {
    try {
      unlinkSync(staged.temp);
    } catch {
      // already gone
    }
    if ((err as NodeJS.ErrnoException).code === "EISDIR")
      throw new UnsafeNameError(staged.relName, "exists as a directory in the destination");
    throw err;
  }
  const { temp: _t, relName: _r, ...written } = staged;
  return written;
}

/** Removes a staged temp file that will not be committed. */
export function discardStaged(staged: StagedFile): void {
  try {
    unlinkSync(staged.temp);
  } catch {
    // already gone
  }
}

/**
 * Writes bytes already received in memory and already verified by the caller (e.g. a download
 * hashed while it streamed in) with the same guarantees as `writeFileAtomic`: temp file in the
 * target directory (O_EXCL, O_NOFOLLOW), fsync, rename; nothing under the final name on failure.
 */
export async function writeVerifiedAtomic(
  root: string,
  relName: string,
  chunks: readonly Uint8Array[],
  options: { readonly fsync?: boolean; readonly guard?: DirectoryGuard } = {},
): Promise<WrittenFile> {
  return renameStaged(await stageVerified(root, relName, chunks, { ...options, fsync: options.fsync ?? true }));
}

/**
 * The first half of `writeVerifiedAtomic`: verified bytes into a fresh temp file beside
 * `root/relName` (O_EXCL, O_NOFOLLOW) with one writev, fsynced only with `fsync: true`. The cheap
 * syscalls run synchronously (for small files a promise and thread-pool round trip each cost more
 * than the syscall: measured), so without fsync this never leaves the main thread.
 */
export async function stageVerified(
  root: string,
  relName: string,
  chunks: readonly Uint8Array[],
  options: { readonly fsync?: boolean; readonly guard?: DirectoryGuard } = {},
): Promise<StagedFile> {
  const target = resolveInside(root, relName);
  const check = checkRelativeName(relName);
  if (!check.ok) throw new UnsafeNameError(relName, check.reason);
  const guard = options.guard ?? new DirectoryGuard(root);
  const dir = guard.ensureSync(check.segments.slice(0, -1), relName);
  const temp = path.join(dir, tempNameFor(path.basename(target)));
  const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  let closed = false;
  let staged = false;
  try {
    let pending = chunks.filter((c) => c.byteLength > 0);
    let bytes = 0;
    while (pending.length > 0) {
      const written = writevSync(fd, pending);
      bytes += written;
      noteWritten(written);
      pending = unwritten(pending, written);
    }
    if (options.fsync === true)
      await new Promise<void>((resolve, reject) => fsyncCb(fd, (err) => (err ? reject(err) : resolve())));
    const st = fstatSync(fd, { bigint: true });
    closeSync(fd);
    closed = true;
    staged = true;
    return {
      path: target,
      temp,
      relName,
      bytes,
      ...fileIdentity(st),
    };
  } finally {
    if (!staged) dropTempSync(closed ? undefined : fd, temp);
  }
}

/**
 * Verifies `bytes` against `expected` (size, CRC32C, else MD5), then writes them into a fresh temp
 * file beside `root/relName` (O_EXCL, O_NOFOLLOW; parents made or checked by `guard`) with
 * synchronous syscalls only: what a stage thread runs for each small object (stage-pool.ts).
 * Nothing is created when the bytes do not match; on any later failure the temp file is removed.
 * The caller counts the bytes for the barrier (`noteWritten`): a stage thread has its own count.
 *
 * With `allowDirect` (a stage thread: it may wait for the disk) and `HCX_DIRECT_IO=all`, objects
 * of DIRECT_MIN_BYTES or more are written with direct I/O (core/direct-io.ts): copied into an
 * aligned buffer, checked there (what is written is what is verified), written in whole blocks,
 * the file cut back to its size. A file system that refuses the write gets this file again, and
 * every later one, buffered.
 * @param name the remote name, for messages
 */
export function stageBufferSync(
  root: string,
  relName: string,
  name: string,
  bytes: Uint8Array,
  expected: ExpectedContent,
  guard: DirectoryGuard,
  allowDirect = false,
): StagedFile {
  const target = resolveInside(root, relName);
  const check = checkRelativeName(relName);
  if (!check.ok) throw new UnsafeNameError(name, check.reason);
  const size = bytes.byteLength;
  const wantDirect = allowDirect && directIo.small && size >= DIRECT_MIN_BYTES;
  const data = wantDirect ? SCRATCH.copyOf(bytes) : bytes;
  verifyBytes(name, wantDirect ? data.subarray(0, size) : data, expected);
  const dir = guard.ensureSync(check.segments.slice(0, -1), name);
  const temp = childOf(dir, tempNameFor(path.basename(target)));
  const { fd, direct } = createMaybeDirectSync(
    temp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o644,
    wantDirect,
  );
  let closed = false;
  let staged = false;
  try {
    if (direct) {
      writeDirectSync(fd, data, 0);
      if (data.byteLength > size) ftruncateSync(fd, size);
    } else {
      let written = 0;
      while (written < size) written += writeSync(fd, data, written, size - written);
    }
    const st = fstatSync(fd, { bigint: true });
    closeSync(fd);
    closed = true;
    staged = true;
    return { path: target, temp, relName, bytes: size, ...fileIdentity(st), ...(direct ? { direct } : {}) };
  } catch (err) {
    if (!(err instanceof DirectRefused)) throw err;
  } finally {
    if (!staged) dropTempSync(closed ? undefined : fd, temp);
  }
  // The file system refused the direct write: this file again, and every later one, buffered.
  directIo.disable();
  return stageBufferSync(root, relName, name, bytes, expected, guard);
}

/** The aligned copy `stageBufferSync` writes directly from (one per thread: it stages one file at a time). */
const SCRATCH = new AlignedScratch();

/** Closes (unless already closed: `fd` undefined) and removes a temp file that will not be staged. */
function dropTempSync(fd: number | undefined, temp: string): void {
  if (fd !== undefined) {
    try {
      closeSync(fd);
    } catch {
      // already failing
    }
  }
  try {
    unlinkSync(temp);
  } catch {
    // already gone
  }
}

const WRITE_BATCH = 1024 * 1024;
/** What is left of `bufs` after a writev wrote `written` bytes (writev may write less than asked). */
export function unwritten<T extends Uint8Array>(bufs: readonly T[], written: number): T[] {
  let left = written;
  const rest: T[] = [];
  for (const b of bufs) {
    if (left >= b.byteLength) left -= b.byteLength;
    else {
      rest.push(left === 0 ? b : (b.subarray(left) as T));
      left = 0;
    }
  }
  return rest;
}

/** writev until every byte of `bufs` is written. */
async function writeAll(fh: FileHandle, bufs: Uint8Array[]): Promise<void> {
  let pending = bufs;
  while (pending.length > 0) {
    const { bytesWritten } = await fh.writev(pending);
    pending = unwritten(pending, bytesWritten);
  }
}

/**
 * Atomically replaces a trusted local file (state, manifest, report): temp + fsync + rename +
 * directory fsync, so a crash leaves either the old or the new content, never a mix.
 */
export async function replaceFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true });
  const stem = `.${path.basename(file)}${TEMP_MARKER}`;
  // Named like every other temp file (host tag + pid), so a killed writer's leftover is recognisable.
  const temp = path.join(dir, `.${path.basename(file)}${writerTag()}`);
  const fh = await open(temp, "wx", 0o644);
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    // A full disk fails the write: leave no temp file behind (nothing else would ever remove it).
    await unlink(temp).catch(() => {});
    throw err;
  }
  try {
    await rename(temp, file);
  } catch (err) {
    await unlink(temp).catch(() => {});
    throw err;
  }
  // A SIGKILL between open and rename leaves a temp beside the file that nothing else sweeps
  // (state and report live outside any mirrored tree): remove those whose writer is gone.
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (name.startsWith(stem) && tempWriterGone(name)) await unlink(path.join(dir, name)).catch(() => {});
  }
  const dh = await open(dir, "r").catch(() => undefined);
  await dh?.sync().catch(() => {});
  await dh?.close();
}
