import { createHash, randomBytes } from "node:crypto";
import os from "node:os";
import { processAlive } from "./process-alive.ts";
import { TEMP_MARKER } from "./safe-path.ts";

/**
 * Temp names: unique per process (host tag + pid + random) and per write (counter); O_EXCL guards
 * the rest. The host tag and pid let a later run on this host see that the writer is dead.
 */
const HOST_TAG = createHash("sha256").update(os.hostname()).digest("hex").slice(0, 6);
let TEMP_ID = `${HOST_TAG}${process.pid.toString(36)}${randomBytes(3).toString("hex")}`;
let tempCounter = 0;

/** This process's writer id (host tag, pid, random), for a stage thread to name temp files with. */
export function writerIdentity(): string {
  return TEMP_ID;
}

/**
 * In a stage thread (stage-pool.ts): name temp files and run rows with the spawning thread's writer
 * id, so that they are this process's to every sweep and session check, and count from
 * `counterBase` (each thread its own range: names never collide across threads).
 */
export function adoptWriterIdentity(id: string, counterBase: number): void {
  if (!/^[0-9a-f]{6}[0-9a-z]+[0-9a-f]{6}$/.test(id) || !Number.isSafeInteger(counterBase) || counterBase < 0)
    throw new Error(`not a writer identity: ${id} ${counterBase}`);
  TEMP_ID = id;
  tempCounter = counterBase;
}

/** Linux and macOS file systems take at most this many bytes per name. */
const MAX_NAME_BYTES = 255;

/**
 * A fresh temp name beside `finalName`: `.` + as much of the name as fits + marker + writer id +
 * counter, bounded in UTF-8 bytes (not UTF-16 units), so any name the file system accepts can
 * land. The name is cut at a code point boundary; the marker stays, so sweeps recognise it.
 */
export function tempNameFor(finalName: string): string {
  const suffix = writerTag();
  return `.${truncateUtf8(finalName, MAX_NAME_BYTES - 1 - Buffer.byteLength(suffix))}${suffix}`;
}

/**
 * The marker, this process's writer id and a fresh counter, as every temp name ends: anything
 * else named with it (a manifest's run row) can be judged by {@link tempWriterGone} too.
 */
export function writerTag(): string {
  return `${TEMP_MARKER}${TEMP_ID}-${++tempCounter}`;
}

/** Whether `name` carries a {@link writerTag} of this very process. */
export function taggedByThisProcess(name: string): boolean {
  return name.includes(`${TEMP_MARKER}${TEMP_ID}-`);
}

/** The longest prefix of `s` (whole code points) that is at most `maxBytes` in UTF-8. */
export function truncateUtf8(s: string, maxBytes: number): string {
  if (Buffer.byteLength(s) <= maxBytes) return s;
  let bytes = 0;
  let out = "";
  for (const ch of s) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > maxBytes) break;
    bytes += n;
    out += ch;
  }
  return out;
}

/**
 * Whether the writer of a temp file (named by writeFileAtomic/writeVerifiedAtomic) is certainly
 * gone: the name carries this host's tag and the pid of a process that no longer runs (e.g. a
 * SIGKILLed run). Such a leftover can be removed at once; any other only once it is old, since a
 * writer on another host sharing the directory may still own it.
 */
export function tempWriterGone(fileName: string, isAlive: (pid: number) => boolean = processAlive): boolean {
  const at = fileName.lastIndexOf(TEMP_MARKER);
  if (at < 0) return false;
  const m = /^([0-9a-f]{6})([0-9a-z]+)[0-9a-f]{6}-\d+$/.exec(fileName.slice(at + TEMP_MARKER.length));
  if (m === null || m[1] !== HOST_TAG) return false;
  const pid = parseInt(m[2]!, 36);
  return Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && !isAlive(pid);
}
