import { stageFile, type StagedFile } from "../core/atomic-file.ts";
import type { DirectoryGuard } from "../core/directory-guard.ts";
import { HcexportError, IntegrityError, UnsafeNameError } from "../core/errors.ts";
import type { ExpectedDigest } from "../core/expected-content.ts";
import type { Lease, Stager } from "../core/stage-pool.ts";
import type { CommitQueue } from "../mirror/commit-queue.ts";
import { receiveInto } from "../net/receive-into.ts";
import { cheapestDigest, DigestVerifier, expectedDigests } from "./digest.ts";
import { Part10Inspector, type Part10Uids } from "./part10.ts";
import type { PullSummary } from "./pull.ts";
import { checkUid, type InstanceRef } from "./search.ts";

/**
 * One retrieved instance onto disk, whatever answer it came in (retrieve.ts): its bytes verified
 * (Part 10 structure, its own UIDs, any digest the server sent), staged under a temp name beside
 * the name its UIDs give it, and handed to the commit stage the mirror uses (barrier, rename,
 * barrier).
 */

/** The seed's layout: `STUDY/SERIES/INSTANCE.dcm` (UIDs are checked to be digits and dots). */
export function instancePath(ref: InstanceRef): string {
  return `${ref.study}/${ref.series}/${ref.instance}.dcm`;
}

/** Bodies up to this size are received in memory, then written with one batch of syscalls. */
export const IN_MEMORY = 4 * 1024 * 1024;
/**
 * The largest instance accepted when the server does not say how long it is (chunked, multipart):
 * an endless body is cut here instead of filling the disk. The largest real instances (whole-slide
 * levels, long cine loops) stay well below it.
 */
export const MAX_INSTANCE_BYTES = 8 * 1024 * 1024 * 1024;
/** A header that has not named its instance within this many bytes is not a header we accept. */
const MAX_UNIDENTIFIED = 64 * 1024 * 1024;

/** What landing an instance needs: where it goes, the write path and the commit stage. */
export interface LandContext {
  readonly dest: string;
  readonly guard: DirectoryGuard;
  /** The commit stage shared with the mirror: barrier, rename, barrier (pull keeps no manifest). */
  readonly queue: CommitQueue;
  /**
   * Where an instance received whole is checked against its digest and written: the mirror's
   * write path for small objects (stage-pool.ts), on a stage thread when the stager has one.
   */
  readonly stager: Stager;
  /** An instance whose commit failed (its barrier or rename). */
  readonly commitFailed: (rel: string, err: unknown) => void;
  readonly summary: PullSummary;
  /** Cut a body longer than this (default MAX_INSTANCE_BYTES; Content-Length when the server sends one). */
  readonly maxInstanceBytes?: number;
}

export interface LandOptions {
  /** Single-instance retrieval: the instance asked for (its UIDs must match). */
  readonly expect?: InstanceRef;
  /** Group retrieval: the study (and series) the parts must belong to. */
  readonly scope?: { readonly study: string; readonly series?: string };
  /** Group retrieval: whether a part, once identified, still has to be written. */
  readonly isWanted?: (uids: Part10Uids) => boolean;
  readonly length?: number;
}

/**
 * Verifies one instance's bytes (Part 10 structure, its UIDs, any digest the server announced) and
 * stages it in a temp file beside its final name, then queues it for the commit stage (barrier,
 * rename, barrier). A body of known length that fits in memory is received whole into a stager's
 * buffer, which checks its digest and writes it (`landWhole`); a multipart part is received in
 * memory up to IN_MEMORY and staged the same way, and a bigger body streams to its temp file once
 * its header has named it, its digest checked as it streams. Returns the SOP Instance UID staged,
 * or undefined when the part was not wanted (already on disk).
 */
export async function land(
  ctx: LandContext,
  body: AsyncIterable<Uint8Array>,
  headers: Record<string, string | string[] | undefined>,
  o: LandOptions,
): Promise<string | undefined> {
  const announced = cheapestDigest(expectedDigests(headers))[0];
  if (o.length !== undefined && o.length > 0 && o.length <= IN_MEMORY)
    return landWhole(ctx, body, announced, o, o.length);
  const inspector = new Part10Inspector();
  const head: Uint8Array[] = [];
  let headBytes = 0;
  const it = body[Symbol.asyncIterator]();
  let done = false;
  // Content-Length when known, else a sane maximum: an endless body is cut the moment it passes it.
  const cap = o.length ?? ctx.maxInstanceBytes ?? MAX_INSTANCE_BYTES;
  const tooLong = () =>
    new IntegrityError(
      `the body is longer than ${o.length !== undefined ? "its Content-Length" : "the largest instance accepted"} (${cap} bytes); cut off`,
    );
  // Receive until the header names the instance and the body is either complete or big.
  while (!(inspector.identified && headBytes > IN_MEMORY)) {
    const n = await it.next();
    if (n.done === true) {
      done = true;
      break;
    }
    headBytes += n.value.byteLength;
    if (headBytes > cap) throw tooLong();
    inspector.update(n.value);
    head.push(n.value);
    if (!inspector.identified && headBytes > MAX_UNIDENTIFIED)
      throw new IntegrityError(`no Study/Series/SOP Instance UIDs in the first ${MAX_UNIDENTIFIED} bytes`);
  }
  const uids = inspector.uids;
  const rel = nameOf(uids, o);
  if (o.isWanted !== undefined && !o.isWanted(uids)) {
    if (!done) for (let n = await it.next(); n.done !== true; n = await it.next()) void n;
    return undefined;
  }
  if (done) {
    structureCheck(inspector, rel, o);
    await stageAndQueue(ctx, leaseOf(ctx.stager, head, headBytes), rel, announced);
    return uids.sopInstanceUid;
  }
  const digest = new DigestVerifier(announced === undefined ? [] : [announced]);
  for (const c of head) digest.update(c);
  let total = headBytes;
  const rest = async function* () {
    yield* head;
    for (let n = await it.next(); n.done !== true; n = await it.next()) {
      total += n.value.byteLength;
      if (total > cap) throw tooLong();
      inspector.update(n.value);
      digest.update(n.value);
      yield n.value;
    }
    structureCheck(inspector, rel, o);
    const mismatch = digest.active ? digest.mismatch() : undefined;
    if (mismatch !== undefined) throw new IntegrityError(`${rel}: ${mismatch}`);
  };
  const staged = await stageFile(ctx.dest, rel, rest(), { guard: ctx.guard });
  await queueCommit(ctx, staged, rel, digest.active);
  return uids.sopInstanceUid;
}

/**
 * `land` for a body whose length is known and fits in memory (a single-part answer): received
 * whole into a stager's buffer as the mirror receives its small objects (flowing mode: no promise
 * per chunk, and no chunk kept, so no socket buffer is pinned while the instance waits for its
 * barrier), inspected in one pass, then handed to the stager, which checks the digest where it
 * writes (and, on a stage thread, takes the buffer as it is, moved rather than copied).
 */
async function landWhole(
  ctx: LandContext,
  body: AsyncIterable<Uint8Array>,
  announced: ExpectedDigest | undefined,
  o: LandOptions,
  length: number,
): Promise<string | undefined> {
  const lease = ctx.stager.lease(length);
  try {
    const label = o.expect === undefined ? "an instance" : instancePath(o.expect);
    await receiveInto(body, lease.bytes, label, "Content-Length's");
    return await landLease(ctx, lease, announced, o);
  } finally {
    lease.release();
  }
}

/** An instance received whole into `lease`: inspected in one pass, then staged and queued (`stageAndQueue`). */
export async function landLease(
  ctx: LandContext,
  lease: Lease,
  announced: ExpectedDigest | undefined,
  o: LandOptions,
): Promise<string | undefined> {
  const inspector = new Part10Inspector();
  inspector.update(lease.bytes);
  const uids = inspector.uids;
  const rel = nameOf(uids, o);
  if (o.isWanted !== undefined && !o.isWanted(uids)) return undefined;
  structureCheck(inspector, rel, o);
  await stageAndQueue(ctx, lease, rel, announced);
  return uids.sopInstanceUid;
}

/** The Part 10 structure is whole and as long as the server said. */
function structureCheck(inspector: Part10Inspector, rel: string, o: LandOptions): void {
  const result = inspector.finish();
  if (!result.ok) throw new IntegrityError(`${rel}: ${result.problem}`);
  if (o.length !== undefined && result.bytes !== o.length)
    throw new IntegrityError(`${rel}: got ${result.bytes} bytes, Content-Length said ${o.length}`);
}

/** A lease holding `chunks` (`bytes` in all): a multipart part, whose length is known only at its end. */
function leaseOf(stager: Stager, chunks: readonly Uint8Array[], bytes: number): Lease {
  const lease = stager.lease(bytes);
  let at = 0;
  for (const c of chunks) {
    lease.bytes.set(c, at);
    at += c.byteLength;
  }
  return lease;
}

/** Stages an instance received whole (on a stage thread when the stager has one) and hands it to the commit stage. */
async function stageAndQueue(
  ctx: LandContext,
  lease: Lease,
  rel: string,
  announced: ExpectedDigest | undefined,
): Promise<void> {
  const expected = { size: lease.bytes.byteLength, ...(announced === undefined ? {} : { digest: announced }) };
  let staged: StagedFile;
  try {
    staged = await ctx.stager.stage({ root: ctx.dest, relName: rel, name: rel, lease, expected, guard: ctx.guard });
  } finally {
    lease.release();
  }
  await queueCommit(ctx, staged, rel, announced !== undefined);
}

/**
 * Hands a staged instance to the commit stage. Its callbacks are made here, not in `land`: a
 * closure there shares that function's context, which holds the response (`it`), and through
 * undici's request controller the socket read buffer its raw header bytes are views of. Each
 * instance waiting for its batch's barrier pinned 64 KiB that way (209 of them, 13 MiB, in a heap
 * snapshot); they lived long enough to reach the old generation and waited for a full collection,
 * and the pull's peak RSS was 170–181 MiB instead of 135–143 (10,000 × 150 KB, c=16).
 */
function queueCommit(ctx: LandContext, staged: StagedFile, rel: string, verified: boolean): Promise<void> {
  const { summary } = ctx;
  return ctx.queue.add({
    staged,
    bytes: staged.bytes,
    committed: () => {
      summary.downloaded++;
      summary.bytes += staged.bytes;
      if (verified) summary.digestVerified++;
    },
    failed: (err) => ctx.commitFailed(rel, err),
  });
}

/** The file name from the instance's own UIDs, checked against what was asked for. */
function nameOf(uids: Part10Uids, o: LandOptions): string {
  const ref = { study: uids.studyInstanceUid, series: uids.seriesInstanceUid, instance: uids.sopInstanceUid };
  const want = o.expect ?? o.scope;
  if (ref.instance === undefined || ref.study === undefined || ref.series === undefined) {
    // A damaged header (or not DICOM at all): retried like any corrupt body.
    throw new IntegrityError(
      `${want === undefined ? "an instance" : Object.values(want).join("/")}: the file does not carry its Study/Series/SOP Instance UIDs in its header`,
    );
  }
  if (want !== undefined) {
    for (const k of ["study", "series", "instance"] as const) {
      const w = (want as Partial<InstanceRef>)[k];
      // Well-formed bytes of another instance are the server's answer, not damage in transit: not retried.
      if (w !== undefined && w !== ref[k])
        throw new HcexportError(`asked for ${k} ${w}, the server sent a file of ${k} ${ref[k]}`);
    }
  }
  const rel = instancePath(ref as InstanceRef);
  for (const uid of Object.values(ref)) {
    const problem = checkUid(uid);
    if (problem !== undefined) throw new UnsafeNameError(rel.slice(0, 300), `a UID in the file is ${problem}`);
  }
  return rel;
}
