import { lstat, mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { DirectoryGuard, writeFileAtomic, writeVerifiedAtomic, type WrittenFile } from "../core/atomic-file.ts";
import { systemClock, type Clock } from "../core/clock.ts";
import { destinationProblem } from "../core/destination.ts";
import { DestinationError, destinationFault, HcexportError, HttpError, IntegrityError, UnsafeNameError } from "../core/errors.ts";
import type { EventSink } from "../core/events.ts";
import { withRetry, type RetryPolicy } from "../core/retry.ts";
import { RESERVED_DIR } from "../core/safe-path.ts";
import { sweepTempFiles } from "../core/temp-sweep.ts";
import { TaskPool } from "../mirror/task-pool.ts";
import { cheapestDigest, DigestVerifier, expectedDigests } from "./digest.ts";
import { MultipartError, MultipartParser, parseContentType, type MultipartEvent } from "./multipart.ts";
import { Part10Inspector, type Part10Uids } from "./part10.ts";
import { checkUid, listInstances, type InstanceRef, type QidoPort, type SearchEvent } from "./search.ts";

/** The retrieve side of a DICOMweb service: a GET relative to its base, streamed. */
export interface WadoPort {
  retrieve(
    path: string,
    accept: string,
    signal?: AbortSignal,
  ): Promise<{ readonly status: number; readonly headers: Record<string, string | string[] | undefined>; readonly body: AsyncIterable<Uint8Array> & { destroy?: () => void } }>;
}

export type DicomwebSource = QidoPort & WadoPort;

/** How instances are retrieved: one request each, or one multipart request per series or study. */
export type RetrieveMode = "instance" | "series" | "study";

export const ACCEPT_SINGLE = "application/dicom; transfer-syntax=*";
export const ACCEPT_MULTIPART = 'multipart/related; type="application/dicom"; transfer-syntax=*';
export const DEFAULT_PAGE_SIZE = 1000;
export const DEFAULT_DICOMWEB_CONCURRENCY = 16;

export type PullEvent =
  | SearchEvent
  | { readonly kind: "dicomweb.start"; readonly source: string; readonly dest: string; readonly mode: RetrieveMode; readonly concurrency: number }
  | { readonly kind: "dicomweb.progress"; readonly listed: number; readonly downloaded: number; readonly skipped: number; readonly failed: number; readonly bytes: number; readonly listingDone: boolean; readonly elapsedMs: number }
  | { readonly kind: "dicomweb.refused"; readonly name: string; readonly reason: string }
  | { readonly kind: "dicomweb.failed"; readonly name: string; readonly reason: string }
  | { readonly kind: "dicomweb.retry"; readonly name: string; readonly attempt: number; readonly delayMs: number; readonly reason: string }
  | { readonly kind: "dicomweb.negotiated"; readonly accept: string; readonly reason: string }
  | { readonly kind: "dicomweb.done"; readonly summary: PullSummary };

export interface PullOptions {
  readonly source: DicomwebSource;
  /** For messages only (e.g. the redacted base URL or the store name). */
  readonly label: string;
  readonly dest: string;
  readonly pageSize?: number;
  readonly concurrency?: number;
  readonly mode?: RetrieveMode;
  readonly search?: "auto" | "instances" | "studies";
  readonly fsync?: boolean;
  readonly clock?: Clock;
  readonly retry?: RetryPolicy;
  readonly onEvent?: EventSink<PullEvent>;
  readonly signal?: AbortSignal;
}

export interface PullSummary {
  listed: number;
  downloaded: number;
  /** Already complete on disk (a file only ever appears there whole and verified). */
  skipped: number;
  failed: number;
  refused: number;
  bytes: number;
  /** Downloads whose bytes were checked against a digest the server sent (the rest: structure and UIDs). */
  digestVerified: number;
  retrieveRequests: number;
  durationMs: number;
  /** The first 100 failures and refusals, with reasons. */
  problems: Array<{ name: string; reason: string }>;
  /** Set when the destination stopped taking files (full, over quota, read-only): the run stopped there. */
  destinationFault?: string;
}

/** The seed's layout: `STUDY/SERIES/INSTANCE.dcm` (UIDs are checked to be digits and dots). */
export function instancePath(ref: InstanceRef): string {
  return `${ref.study}/${ref.series}/${ref.instance}.dcm`;
}

const PROGRESS_MS = 250;
/** Bodies up to this size are received in memory, then written with one batch of syscalls. */
const IN_MEMORY = 4 * 1024 * 1024;
/** A header that has not named its instance within this many bytes is not a header we accept. */
const MAX_UNIDENTIFIED = 64 * 1024 * 1024;

/**
 * `dicomweb pull`: lists every instance with QIDO-RS (`search.ts`) and retrieves the missing ones
 * with WADO-RS in parallel, each verified (Part 10 structure, the UIDs it was asked for, any digest
 * the server sends) and written atomically. Rerun, it downloads only what is not on disk yet.
 */
export async function pull(o: PullOptions): Promise<PullSummary> {
  const clock = o.clock ?? systemClock;
  const started = clock.now();
  const mode = o.mode ?? "instance";
  const concurrency = o.concurrency ?? DEFAULT_DICOMWEB_CONCURRENCY;
  const emit = o.onEvent ?? (() => {});
  const dest = path.resolve(o.dest);
  const guard = new DirectoryGuard(dest);
  const s: PullSummary = { listed: 0, downloaded: 0, skipped: 0, failed: 0, refused: 0, bytes: 0, digestVerified: 0, retrieveRequests: 0, durationMs: 0, problems: [] };
  let listingDone = false;
  let lastTick = 0;
  const note = (name: string, reason: string) => {
    if (s.problems.length < 100) s.problems.push({ name, reason });
  };
  const tick = (force = false) => {
    const now = clock.now();
    if (!force && now - lastTick < PROGRESS_MS) return;
    lastTick = now;
    emit({ kind: "dicomweb.progress", listed: s.listed, downloaded: s.downloaded, skipped: s.skipped, failed: s.failed + s.refused, bytes: s.bytes, listingDone, elapsedMs: now - started });
  };
  emit({ kind: "dicomweb.start", source: o.label, dest, mode, concurrency });
  const problem = await destinationProblem(dest);
  if (problem !== undefined) throw new DestinationError(dest, problem, 0);
  await guard.ensure([], dest);
  // A run marks the destination while it writes; a mark left behind means it was killed, and its
  // temp files (older than a minute: a younger one may be a concurrent run's) are swept.
  const marker = path.join(dest, RESERVED_DIR, "dicomweb-pull.running");
  if (await exists(marker)) await sweepTempFiles(dest, 60_000);
  await mkdir(path.dirname(marker), { recursive: true });
  await writeFile(marker, `${process.pid} ${new Date(started).toISOString()}\n`);

  const ctx: RetrieveContext = { source: o.source, dest, guard, fsync: o.fsync ?? true, accept: ACCEPT_SINGLE, summary: s, emit, ...(o.signal === undefined ? {} : { signal: o.signal }) };
  const retry = <T>(name: string, fn: () => Promise<T>) =>
    withRetry(fn, {
      clock,
      ...(o.retry === undefined ? {} : { policy: o.retry }),
      ...(o.signal === undefined ? {} : { signal: o.signal }),
      onRetry: (n) => emit({ kind: "dicomweb.retry", name, attempt: n.attempt, delayMs: n.delayMs, reason: reasonOf(n.error) }),
    });
  const pool = new TaskPool(concurrency);
  /** A full or read-only destination stops the run: every further write would fail the same way. */
  const stopOn = (err: unknown): boolean => {
    const fault = destinationFault(err);
    if (fault !== undefined) s.destinationFault ??= fault;
    return fault !== undefined;
  };
  const groups = new Map<string, { path: string; scope: InstanceRef; missing: Map<string, InstanceRef> }>();

  for await (const listed of listInstances(o.source, { pageSize: o.pageSize ?? DEFAULT_PAGE_SIZE, strategy: o.search ?? "auto", onEvent: emit, ...(o.signal === undefined ? {} : { signal: o.signal }) })) {
    if (!listed.ok) {
      s.refused++;
      note(listed.name, listed.reason);
      emit({ kind: "dicomweb.refused", name: listed.name, reason: listed.reason });
      continue;
    }
    if (s.destinationFault !== undefined) break;
    s.listed++;
    const ref = listed.ref;
    if (await isComplete(dest, instancePath(ref))) {
      s.skipped++;
      tick();
      continue;
    }
    if (mode === "instance") {
      await pool.run(async () => {
        try {
          await retry(instancePath(ref), () => retrieveInstance(ctx, ref));
        } catch (err) {
          if (!stopOn(err)) {
            s.failed++;
            note(instancePath(ref), reasonOf(err));
            emit({ kind: "dicomweb.failed", name: instancePath(ref), reason: reasonOf(err) });
          }
        }
        tick();
      });
    } else {
      const key = mode === "series" ? `${ref.study}/${ref.series}` : ref.study;
      let g = groups.get(key);
      if (g === undefined) {
        g = { path: mode === "series" ? `studies/${ref.study}/series/${ref.series}` : `studies/${ref.study}`, scope: ref, missing: new Map() };
        groups.set(key, g);
      }
      g.missing.set(ref.instance, ref);
    }
  }
  listingDone = true;
  for (const g of groups.values()) {
    if (s.destinationFault !== undefined) break;
    await pool.run(async () => {
      try {
        await retry(g.path, () => retrieveGroup(ctx, g.path, mode === "series" ? { study: g.scope.study, series: g.scope.series } : { study: g.scope.study }, g.missing));
      } catch (err) {
        if (stopOn(err)) return;
        for (const ref of g.missing.values()) {
          s.failed++;
          note(instancePath(ref), reasonOf(err));
          emit({ kind: "dicomweb.failed", name: instancePath(ref), reason: reasonOf(err) });
        }
      }
      tick();
    });
  }
  await pool.drain();
  await rm(marker, { force: true });
  s.durationMs = clock.now() - started;
  tick(true);
  emit({ kind: "dicomweb.done", summary: s });
  return s;
}

interface RetrieveContext {
  readonly source: WadoPort;
  readonly dest: string;
  readonly guard: DirectoryGuard;
  readonly fsync: boolean;
  /** What single-instance requests ask for; switches to multipart once if the server refuses it. */
  accept: string;
  readonly summary: PullSummary;
  readonly emit: EventSink<PullEvent>;
  readonly signal?: AbortSignal;
}

async function exists(file: string): Promise<boolean> {
  return lstat(file).then(
    () => true,
    () => false,
  );
}

/** A file only ever appears under its final name complete and verified, so existing = done. */
async function isComplete(dest: string, rel: string): Promise<boolean> {
  try {
    const st = await lstat(path.join(dest, rel));
    return st.isFile() && st.size > 0;
  } catch {
    return false;
  }
}

async function retrieveInstance(ctx: RetrieveContext, ref: InstanceRef): Promise<void> {
  const wadoPath = `studies/${ref.study}/series/${ref.series}/instances/${ref.instance}`;
  let res;
  const accept = ctx.accept;
  try {
    ctx.summary.retrieveRequests++;
    res = await ctx.source.retrieve(wadoPath, accept, ctx.signal);
  } catch (err) {
    // Servers that only speak multipart (the standard's form; e.g. Orthanc) refuse the
    // single-part Accept with 400 or 406: switch once for the whole run, and ask again.
    if (err instanceof HttpError && (err.status === 406 || err.status === 400) && accept === ACCEPT_SINGLE) {
      if (ctx.accept === ACCEPT_SINGLE) {
        ctx.accept = ACCEPT_MULTIPART;
        ctx.emit({ kind: "dicomweb.negotiated", accept: ACCEPT_MULTIPART, reason: `the server answered ${err.status} to "${ACCEPT_SINGLE}"` });
      }
      ctx.summary.retrieveRequests++;
      res = await ctx.source.retrieve(wadoPath, ACCEPT_MULTIPART, ctx.signal);
    } else throw err;
  }
  try {
    const ct = parseContentType(headerOf(res.headers, "content-type"));
    if (ct.type === "multipart/related") {
      let got = 0;
      await eachPart(res.body, ct.params["boundary"], async (headers, body) => {
        if (++got > 1) throw new IntegrityError(`${wadoPath}: the server sent more than one instance`);
        await land(ctx, body, headers, { expect: ref });
      });
      if (got === 0) throw new IntegrityError(`${wadoPath}: the multipart answer holds no instance`);
    } else {
      if (ct.type !== "application/dicom" && ct.type !== "application/octet-stream") throw new HcexportError(`${wadoPath}: the server answered ${ct.type || "without a Content-Type"}, not application/dicom`);
      const length = Number(headerOf(res.headers, "content-length"));
      await land(ctx, res.body, res.headers, { expect: ref, ...(Number.isFinite(length) ? { length } : {}) });
    }
  } catch (err) {
    res.body.destroy?.();
    throw err;
  }
}

/** One multipart request for a series or a study; writes the parts that are missing on disk. */
async function retrieveGroup(ctx: RetrieveContext, wadoPath: string, scope: { study: string; series?: string }, missing: Map<string, InstanceRef>): Promise<void> {
  ctx.summary.retrieveRequests++;
  const res = await ctx.source.retrieve(wadoPath, ACCEPT_MULTIPART, ctx.signal);
  try {
    const ct = parseContentType(headerOf(res.headers, "content-type"));
    if (ct.type !== "multipart/related") throw new HcexportError(`${wadoPath}: expected multipart/related, the server answered ${ct.type || "without a Content-Type"}`);
    await eachPart(res.body, ct.params["boundary"], async (headers, body) => {
      const written = await land(ctx, body, headers, { scope, isWanted: (uids) => missing.has(uids.sopInstanceUid ?? "") });
      if (written !== undefined) missing.delete(written);
    });
  } catch (err) {
    res.body.destroy?.();
    throw err;
  }
  if (missing.size > 0) throw new IntegrityError(`${wadoPath}: ${missing.size} listed instance(s) missing from the server's answer`);
}

function headerOf(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Runs `onPart` for each part of a multipart body, streaming; a malformed or cut body is an IntegrityError (retried). */
async function eachPart(body: AsyncIterable<Uint8Array>, boundary: string | undefined, onPart: (headers: Readonly<Record<string, string>>, body: AsyncIterable<Buffer>) => Promise<void>): Promise<void> {
  if (boundary === undefined) throw new HcexportError("multipart answer without a boundary parameter");
  const events = multipartEvents(body, boundary)[Symbol.asyncIterator]();
  for (;;) {
    const next = await events.next();
    if (next.done === true) return;
    if (next.value.kind !== "part") throw new IntegrityError("malformed multipart body");
    let ended = false;
    const partBody: AsyncIterable<Buffer> = {
      async *[Symbol.asyncIterator]() {
        for (;;) {
          const n = await events.next();
          if (n.done === true) throw new IntegrityError("the multipart body ended inside a part");
          if (n.value.kind === "end") {
            ended = true;
            return;
          }
          if (n.value.kind === "data") yield n.value.chunk;
        }
      },
    };
    await onPart(next.value.headers, partBody);
    // A part skipped or only partly read: consume the rest of it.
    if (!ended) for await (const _ of partBody) void _;
  }
}

async function* multipartEvents(body: AsyncIterable<Uint8Array>, boundary: string): AsyncGenerator<MultipartEvent> {
  try {
    const parser = new MultipartParser(boundary);
    for await (const chunk of body) yield* parser.push(chunk);
    parser.finish();
  } catch (err) {
    if (err instanceof MultipartError) throw new IntegrityError(err.message);
    throw err;
  }
}

interface LandOptions {
  /** Single-instance retrieval: the instance asked for (its UIDs must match). */
  readonly expect?: InstanceRef;
  /** Group retrieval: the study (and series) the parts must belong to. */
  readonly scope?: { readonly study: string; readonly series?: string };
  /** Group retrieval: whether a part, once identified, still has to be written. */
  readonly isWanted?: (uids: Part10Uids) => boolean;
  readonly length?: number;
}

/**
 * Verifies one instance's bytes while receiving them and puts them under their final name
 * atomically. Small bodies are received in memory and written in one go; larger ones stream to a
 * temp file once their header has named them. Returns the SOP Instance UID written, or
 * undefined when the part was not wanted (already on disk).
 */
async function land(ctx: RetrieveContext, body: AsyncIterable<Uint8Array>, headers: Record<string, string | string[] | undefined>, o: LandOptions): Promise<string | undefined> {
  const inspector = new Part10Inspector();
  const digest = new DigestVerifier(cheapestDigest(expectedDigests(headers)));
  const head: Uint8Array[] = [];
  let headBytes = 0;
  const it = body[Symbol.asyncIterator]();
  let done = false;
  // Receive until the header names the instance and the body is either complete or big.
  while (!(inspector.identified && headBytes > IN_MEMORY)) {
    const n = await it.next();
    if (n.done === true) {
      done = true;
      break;
    }
    inspector.update(n.value);
    digest.update(n.value);
    head.push(n.value);
    headBytes += n.value.byteLength;
    if (!inspector.identified && headBytes > MAX_UNIDENTIFIED) throw new IntegrityError(`no Study/Series/SOP Instance UIDs in the first ${MAX_UNIDENTIFIED} bytes`);
  }
  const uids = inspector.uids;
  const rel = nameOf(uids, o);
  if (o.isWanted !== undefined && !o.isWanted(uids)) {
    if (!done) for (let n = await it.next(); n.done !== true; n = await it.next()) void n;
    return undefined;
  }
  const finalCheck = () => {
    const result = inspector.finish();
    if (!result.ok) throw new IntegrityError(`${rel}: ${result.problem}`);
    if (o.length !== undefined && result.bytes !== o.length) throw new IntegrityError(`${rel}: got ${result.bytes} bytes, Content-Length said ${o.length}`);
    const mismatch = digest.active ? digest.mismatch() : undefined;
    if (mismatch !== undefined) throw new IntegrityError(`${rel}: ${mismatch}`);
  };
  let written: WrittenFile;
  if (done) {
    finalCheck();
    written = await writeVerifiedAtomic(ctx.dest, rel, head, { guard: ctx.guard, fsync: ctx.fsync });
  } else {
    const rest = async function* () {
      yield* head;
      for (let n = await it.next(); n.done !== true; n = await it.next()) {
        inspector.update(n.value);
        digest.update(n.value);
        yield n.value;
      }
      finalCheck();
    };
    written = await writeFileAtomic(ctx.dest, rel, rest(), { guard: ctx.guard, fsync: ctx.fsync });
  }
  ctx.summary.downloaded++;
  ctx.summary.bytes += written.bytes;
  if (digest.active) ctx.summary.digestVerified++;
  return uids.sopInstanceUid;
}

/** The file name from the instance's own UIDs, checked against what was asked for. */
function nameOf(uids: Part10Uids, o: LandOptions): string {
  const ref = { study: uids.studyInstanceUid, series: uids.seriesInstanceUid, instance: uids.sopInstanceUid };
  const want = o.expect ?? o.scope;
  if (ref.instance === undefined || ref.study === undefined || ref.series === undefined) {
    // A damaged header (or not DICOM at all): retried like any corrupt body.
    throw new IntegrityError(`${want === undefined ? "an instance" : Object.values(want).join("/")}: the file does not carry its Study/Series/SOP Instance UIDs in its header`);
  }
  if (want !== undefined) {
    for (const k of ["study", "series", "instance"] as const) {
      const w = (want as Partial<InstanceRef>)[k];
      // Well-formed bytes of another instance are the server's answer, not damage in transit: not retried.
      if (w !== undefined && w !== ref[k]) throw new HcexportError(`asked for ${k} ${w}, the server sent a file of ${k} ${ref[k]}`);
    }
  }
  const rel = instancePath(ref as InstanceRef);
  for (const uid of Object.values(ref)) {
    const problem = checkUid(uid);
    if (problem !== undefined) throw new UnsafeNameError(rel.slice(0, 300), `a UID in the file is ${problem}`);
  }
  return rel;
}

function reasonOf(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error && cause.message !== err.message ? `${err.message} (${cause.message})` : err.message;
  }
  return String(err);
}
