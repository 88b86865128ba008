import { constants, openSync, unlinkSync, write as writeCb, writeSync } from "node:fs";
import { open, unlink, type FileHandle } from "node:fs/promises";

/**
 * Direct I/O (`O_DIRECT`) for the files a mirror writes (issue #11): the bytes go from the
 * process's buffer to the disk, not through the page cache.
 *
 * A buffered write copies every byte into page-cache pages, which the kernel then writes back,
 * and a durable copy syncs them on top. Measured on the 2-core bench VM (ext4 on virtio), writing
 * 300 MiB in 1 MiB writes:
 * - buffered: 0.83 s of system CPU, then 0.17 s of `sync`;
 * - `O_DIRECT`: 0.19 s, 0.04 s of CPU; with the final fdatasync 0.25 s.
 *
 * `O_DIRECT` has rules (Linux `open(2)`, "O_DIRECT"): the buffer's address, the file offset and
 * the length must be multiples of the device's alignment (`statx` `stx_dio_mem_align` /
 * `stx_dio_offset_align`, 512 on the bench disk). Everything here is aligned to DIRECT_ALIGN
 * (4096, the largest logical block size in use), so no query is needed:
 * - buffers come from `AlignedChunks` and `AlignedScratch` (WebAssembly memories, which V8 maps
 *   page-aligned; an ArrayBuffer's address is whatever malloc gave);
 * - offsets and lengths are multiples of DIRECT_ALIGN, the file's last block padded with zeros
 *   and the file cut back to its size with one ftruncate.
 *
 * A file system that refuses the flag (EINVAL at open: FUSE, older tmpfs) gets the usual
 * buffered descriptor; a write it refuses (EINVAL: an alignment this code did not expect) makes
 * `DirectRefused`, on which the caller writes the file again, buffered, and direct I/O stays off
 * for the rest of the process (`directIo.disable`).
 *
 * Durability is unchanged: a direct write leaves the file's size and block map in the journal and
 * the data perhaps in the disk's own cache, so the commit stage's barrier (syncfs or fdatasync)
 * still runs; it just has no dirty pages left to write.
 */

/** Offsets, lengths and buffer addresses of direct writes are multiples of this. */
export const DIRECT_ALIGN = 4096;

/** `n` rounded up to a multiple of DIRECT_ALIGN. */
export const alignUp = (n: number): number => Math.ceil(n / DIRECT_ALIGN) * DIRECT_ALIGN;

/**
 * What is written with direct I/O: `big` objects (the ranged ones, the default), `all` (the stage
 * threads' objects of DIRECT_MIN_BYTES or more too), or nothing (`off`).
 *
 * Why not `all` by default: for a file of 150 KB the page cache's cost depends on the machine's
 * memory, not on hcexport. Measured on the bench VM, 10,000 × 150 KB, interleaved:
 * - where the page cache takes pages that were never touched (a fresh VM: the host maps each on
 *   first use), buffered writes cost 6.3–7.4 s of system CPU and direct ones 3.3–3.7 s, and the
 *   copy took 8.2–9.1 s buffered against 7.45–7.50 s direct;
 * - where it reuses pages (after `drop_caches`, or once the cache has grown), buffered writes cost
 *   2.5–3.6 s of system CPU, the copy took 6.1–9.5 s buffered against 8.2–10.6 s direct: a direct
 *   write waits for the disk and allocates its blocks at once, and the stage threads then spent
 *   0.9 s more CPU (perf) than one buffered thread.
 * A big object's slices write 1 MiB at a time, where direct I/O wins either way (300 MiB: 0.83 s
 * of system CPU buffered, 0.04 s direct; no background writeback to run).
 */
export type DirectIoMode = "off" | "big" | "all";

/**
 * The mode: `HCX_DIRECT_IO` = `0` (off), `all`, else `big`; off where O_DIRECT does not exist
 * (not Linux).
 */
export function directIoModeFrom(
  env = process.env["HCX_DIRECT_IO"],
  available = process.platform === "linux" && constants.O_DIRECT !== undefined,
): DirectIoMode {
  if (!available || env === "0" || env === "off") return "off";
  return env === "all" ? "all" : "big";
}

/** The process's direct-I/O mode, and its switch-off when a file system refuses a direct write. */
class DirectIoSwitch {
  #mode: DirectIoMode;
  constructor(mode: DirectIoMode) {
    this.#mode = mode;
  }
  /** Big objects are written directly. */
  get on(): boolean {
    return this.#mode !== "off";
  }
  /** The stage threads' objects are too. */
  get small(): boolean {
    return this.#mode === "all";
  }
  /** Off for the rest of the process (a file system refused a direct write). */
  disable(): void {
    this.#mode = "off";
  }
  /** For tests: any mode, whatever the platform. */
  set(mode: DirectIoMode): void {
    this.#mode = mode;
  }
}

/** The process's direct-I/O switch. */
export const directIo = new DirectIoSwitch(directIoModeFrom());

/** A direct write the file system refused (EINVAL): write the file again without O_DIRECT. */
export class DirectRefused extends Error {
  constructor(cause: unknown) {
    super("the file system refused a direct (O_DIRECT) write", { cause });
    this.name = "DirectRefused";
  }
}

/**
 * Creates `file` (flags with O_CREAT | O_EXCL: a temp name of this process's own) with O_DIRECT
 * added when `wantDirect`. A file system that refuses the flag (EINVAL) may have created the file
 * before refusing it, so the name is removed and created again without the flag. Returns the
 * handle and whether it is direct.
 */
export async function createMaybeDirect(
  file: string,
  flags: number,
  mode: number,
  wantDirect: boolean,
): Promise<{ handle: FileHandle; direct: boolean }> {
  if (wantDirect) {
    try {
      return { handle: await open(file, flags | constants.O_DIRECT, mode), direct: true };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EINVAL") throw err;
      await unlink(file).catch(() => {});
    }
  }
  return { handle: await open(file, flags, mode), direct: false };
}

/** `createMaybeDirect` for a thread that writes synchronously: the descriptor and whether it is direct. */
export function createMaybeDirectSync(
  file: string,
  flags: number,
  mode: number,
  wantDirect: boolean,
): { fd: number; direct: boolean } {
  if (wantDirect) {
    try {
      return { fd: openSync(file, flags | constants.O_DIRECT, mode), direct: true };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EINVAL") throw err;
      try {
        unlinkSync(file);
      } catch {
        // not created
      }
    }
  }
  return { fd: openSync(file, flags, mode), direct: false };
}

/**
 * Writes all of `buf` (aligned: address, length, `position`) at `position` on a direct
 * descriptor. A short write continues from where it stopped if that is aligned; EINVAL, or a
 * short write that is not, is DirectRefused.
 */
export async function writeDirect(fd: number, buf: Buffer, position: number): Promise<void> {
  for (let done = 0; done < buf.byteLength;) {
    const n = await new Promise<number>((resolve, reject) =>
      writeCb(fd, buf, done, buf.byteLength - done, position + done, (err, written) =>
        err ? reject(refusedOr(err)) : resolve(written),
      ),
    );
    done = goOn(done, n, buf.byteLength);
  }
}

/** `writeDirect`, synchronous (a stage thread's). */
export function writeDirectSync(fd: number, buf: Uint8Array, position: number): void {
  for (let done = 0; done < buf.byteLength;) {
    let n: number;
    try {
      n = writeSync(fd, buf, done, buf.byteLength - done, position + done);
    } catch (err) {
      throw refusedOr(err);
    }
    done = goOn(done, n, buf.byteLength);
  }
}

/** A direct write's error: EINVAL (the file system refused it) as DirectRefused, any other as is. */
function refusedOr(err: unknown): unknown {
  return (err as NodeJS.ErrnoException).code === "EINVAL" ? new DirectRefused(err) : err;
}

/** The bytes written after `n` more of `total`; a short write that cannot go on aligned is DirectRefused. */
function goOn(done: number, n: number, total: number): number {
  const now = done + n;
  if (now < total && (n === 0 || now % DIRECT_ALIGN !== 0))
    throw new DirectRefused(new Error(`short direct write: ${now} of ${total} bytes`));
  return now;
}

/** WebAssembly's memory constructor (not in the TypeScript libraries this project compiles with). */
const WasmMemory = (
  globalThis as unknown as {
    WebAssembly: { Memory: new (descriptor: { initial: number }) => { readonly buffer: ArrayBuffer } };
  }
).WebAssembly.Memory;

/**
 * With `HCX_DIRECT_IO=all`, objects at least this big are written directly by a stage thread.
 * Below, the page cache costs little (a few pages) while a direct write waits for the disk (a
 * synchronous block write per file, ~0.1–0.4 ms on the bench VM).
 */
export const DIRECT_MIN_BYTES = 64 * 1024;

/**
 * One reusable aligned buffer for a thread that writes one file at a time: `copyOf(bytes)` is an
 * aligned copy of `bytes`, zero-padded to a whole number of blocks (`alignUp`). Made bigger (a
 * new memory) when an object needs more; never smaller.
 */
export class AlignedScratch {
  #buf: Buffer | undefined;
  copyOf(bytes: Uint8Array): Buffer {
    const padded = alignUp(bytes.byteLength);
    if (this.#buf === undefined || this.#buf.byteLength < padded)
      this.#buf = Buffer.from(new WasmMemory({ initial: Math.ceil(padded / 65536) }).buffer);
    const out = this.#buf.subarray(0, padded);
    out.set(bytes);
    out.fill(0, bytes.byteLength);
    return out;
  }
}

/**
 * Page-aligned buffers of `chunkBytes` (a multiple of 64 KiB, WebAssembly's page), reused: carved
 * from WebAssembly memories of `perSlab` chunks each, made as more chunks are taken at once than
 * exist, and never grown (growing a memory detaches its buffer, under any write in flight). The
 * slabs stay until the process ends: a mirror's peak use is its bound (one chunk per ranged slice
 * in flight).
 */
export class AlignedChunks {
  readonly chunkBytes: number;
  readonly #perSlab: number;
  readonly #free: Buffer[] = [];
  #made = 0;
  constructor(chunkBytes: number, perSlab = 8) {
    if (chunkBytes <= 0 || chunkBytes % 65536 !== 0)
      throw new RangeError(`chunk size ${chunkBytes} is not a multiple of 64 KiB`);
    this.chunkBytes = chunkBytes;
    this.#perSlab = Math.max(1, Math.floor(perSlab));
  }
  /** Chunks made so far (slabs × chunks per slab). */
  get made(): number {
    return this.#made;
  }
  take(): Buffer {
    let chunk = this.#free.pop();
    if (chunk === undefined) {
      const memory = new WasmMemory({ initial: (this.chunkBytes / 65536) * this.#perSlab });
      for (let i = this.#perSlab - 1; i >= 1; i--)
        this.#free.push(Buffer.from(memory.buffer, i * this.chunkBytes, this.chunkBytes));
      chunk = Buffer.from(memory.buffer, 0, this.chunkBytes);
      this.#made += this.#perSlab;
    }
    return chunk;
  }
  give(chunk: Buffer): void {
    this.#free.push(chunk);
  }
}
