import { lstat } from "node:fs/promises";
import path from "node:path";
import { writeVerifiedAtomic } from "../core/atomic-file.ts";
import { DirectoryGuard } from "../core/directory-guard.ts";
import { systemClock, type Clock } from "../core/clock.ts";
import { destinationProblem } from "../core/destination.ts";
import { DestinationError, HcexportError, HttpError, IntegrityError, destinationFault } from "../core/errors.ts";
import type { EventSink } from "../core/events.ts";
import { withRetry, type RetryPolicy } from "../core/retry.ts";
import { barrierFor } from "../core/barrier.ts";
import { createStager } from "../core/stage-pool.ts";
import { CommitQueue } from "../mirror/commit-queue.ts";
import { TaskPool } from "../mirror/task-pool.ts";
import { cheapestDigest, DigestVerifier, expectedDigests } from "./digest.ts";
import { frameExtension, imageComplete, wadoPathOf, type GetTarget } from "./get-target.ts";
import { parseContentType } from "./multipart.ts";
import type { DicomwebSource, PullEvent, PullSummary } from "./pull.ts";
import { instancePath } from "./land.ts";
import {
  ACCEPT_SINGLE,
  eachPart,
  headerOf,
  retrieveGroup,
  retrieveInstance,
  type RetrieveContext,
} from "./retrieve.ts";
import type { InstanceRef } from "./search.ts";
import { listSubset } from "./subset.ts";

export interface GetOptions {
  readonly source: DicomwebSource;
  readonly label: string;
  readonly dest: string;
  readonly target: GetTarget;
  /** Rendered images (`…/rendered`) instead of DICOM: instances as `I.png|jpg`, frames as `I/frames/N.png|jpg`. */
  readonly rendered?: "png" | "jpeg";
  /** Also write the DICOM JSON metadata of the target: `S/metadata.json`, `S/SE/metadata.json` or `S/SE/I/metadata.json`. */
  readonly metadata?: boolean;
  readonly pageSize?: number;
  readonly concurrency?: number;
  readonly fsync?: boolean;
  readonly clock?: Clock;
  readonly retry?: RetryPolicy;
  readonly onEvent?: EventSink<PullEvent>;
  readonly signal?: AbortSignal;
}

/** What a frames request asks for first: the frames as stored (no transcoding). */
export const ACCEPT_FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
const ACCEPT_FRAMES_DEFAULT = 'multipart/related; type="application/octet-stream"';
/** A body held in memory (frames, rendered images, metadata) is refused beyond this. */
const MAX_BODY = 1024 * 1024 * 1024;

type Metadata = Array<Record<string, { vr?: string; Value?: unknown[] } | undefined>>;

/**
 * `dicomweb get`: one study, series, instance or frame list, each part of the answer its own
 * file, with the verification of `pull` (Part 10 structure and UIDs for instances, any digest the
 * server sends, sizes and image markers for frames and rendered images) and atomic writes.
 */
export async function get(o: GetOptions): Promise<PullSummary> {
  const clock = o.clock ?? systemClock;
  const started = clock.now();
  const emit = o.onEvent ?? (() => {});
  const dest = path.resolve(o.dest);
  const guard = new DirectoryGuard(dest);
  const s: PullSummary = {
    listed: 0,
    downloaded: 0,
    skipped: 0,
    failed: 0,
    refused: 0,
    bytes: 0,
    digestVerified: 0,
    retrieveRequests: 0,
    durationMs: 0,
    problems: [],
  };
  const t = o.target;
  emit({
    kind: "dicomweb.start",
    source: o.label,
    dest,
    mode: t.instance === undefined ? "study" : "instance",
    concurrency: o.concurrency ?? 8,
  });
  const problem = await destinationProblem(dest);
  if (problem !== undefined) throw new DestinationError(dest, problem, 0);
  await guard.ensure([], dest);
  /** A commit that failed (barrier or rename): counted like any failure; a full disk ends the command. */
  let commitFault: string | undefined;
  const ctx: RetrieveContext = {
    source: o.source,
    dest,
    guard,
    queue: new CommitQueue({ barrier: barrierFor(dest, o.fsync ?? true) }),
    // One answer at a time, written on this thread (a stage thread would cost more to start).
    stager: createStager(0),
    commitFailed: (rel, err) => {
      commitFault ??= destinationFault(err);
      s.failed++;
      if (s.problems.length < 100) s.problems.push({ name: rel, reason: reasonOf(err) });
      emit({ kind: "dicomweb.failed", name: rel, reason: reasonOf(err) });
    },
    accept: ACCEPT_SINGLE,
    summary: s,
    emit,
    ...(o.signal === undefined ? {} : { signal: o.signal }),
  };
  const retry = <T>(name: string, fn: () => Promise<T>) =>
    withRetry(fn, {
      clock,
      ...(o.retry === undefined ? {} : { policy: o.retry }),
      ...(o.signal === undefined ? {} : { signal: o.signal }),
      onRetry: (n) =>
        emit({ kind: "dicomweb.retry", name, attempt: n.attempt, delayMs: n.delayMs, reason: reasonOf(n.error) }),
    });
  /** Runs one piece; a failure is counted and reported, a full or read-only destination stops everything. */
  const attempt = async (name: string, fn: () => Promise<void>) => {
    try {
      await retry(name, fn);
    } catch (err) {
      const fault = destinationFault(err);
      if (fault !== undefined) throw new DestinationError(dest, fault, s.downloaded);
      s.failed++;
      if (s.problems.length < 100) s.problems.push({ name, reason: reasonOf(err) });
      emit({ kind: "dicomweb.failed", name, reason: reasonOf(err) });
    }
  };
  const write = async (rel: string, body: Buffer, digested: boolean) => {
    const w = await writeVerifiedAtomic(dest, rel, [body], { guard, fsync: o.fsync ?? true });
    s.downloaded++;
    s.bytes += w.bytes;
    if (digested) s.digestVerified++;
  };
  const fetchBody = async (wadoPath: string, accept: string) => {
    s.retrieveRequests++;
    const res = await o.source.retrieve(wadoPath, accept, o.signal);
    const digest = new DigestVerifier(cheapestDigest(expectedDigests(res.headers)));
    const chunks: Uint8Array[] = [];
    let n = 0;
    try {
      for await (const c of res.body) {
        n += c.byteLength;
        if (n > MAX_BODY) throw new HcexportError(`${wadoPath}: the answer exceeds ${MAX_BODY} bytes`);
        digest.update(c);
        chunks.push(c);
      }
    } catch (err) {
      res.body.destroy?.();
      throw err;
    }
    const body = Buffer.concat(chunks);
    const length = Number(headerOf(res.headers, "content-length"));
    if (Number.isFinite(length) && length !== body.length)
      throw new IntegrityError(`${wadoPath}: got ${body.length} bytes, Content-Length said ${length}`);
    const mismatch = digest.active ? digest.mismatch() : undefined;
    if (mismatch !== undefined) throw new IntegrityError(`${wadoPath}: ${mismatch}`);
    return {
      headers: res.headers,
      contentType: parseContentType(headerOf(res.headers, "content-type")),
      body,
      digested: digest.active,
    };
  };

  const base = wadoPathOf(t);
  let meta: Metadata | undefined;
  const needMeta = o.metadata === true || t.frames !== undefined;
  if (needMeta) {
    await attempt(`${base}/metadata`, async () => {
      const r = await fetchBody(`${base}/metadata`, "application/dicom+json");
      meta = checkMetadata(r.body, t, base);
      if (o.metadata === true) {
        const rel = [t.study, t.series, t.instance].filter((x) => x !== undefined).join("/");
        await write(`${rel}/metadata.json`, r.body, r.digested);
      }
    });
  }

  if (t.instance !== undefined && t.series !== undefined) {
    const ref: InstanceRef = { study: t.study, series: t.series, instance: t.instance };
    s.listed = 1;
    if (t.frames !== undefined) {
      if (meta !== undefined)
        await attempt(`${base}/frames/${t.frames.join(",")}`, () => getFrames(ref, t.frames!, meta![0]!));
    } else if (o.rendered !== undefined) {
      await attempt(`${base}/rendered`, () => getRendered(ref, `${base}/rendered`, renderedName(ref, o.rendered!)));
    } else if (await isFile(path.join(dest, instancePath(ref)))) s.skipped++;
    else await attempt(base, () => retrieveInstance(ctx, ref));
  } else {
    // A study or series: its instances as QIDO lists them (every page), then one multipart
    // request for those not on disk yet — or, rendered, one request per instance.
    const refs: InstanceRef[] = [];
    await attempt(`${base} (search)`, async () => {
      refs.length = 0;
      const scope = { study: t.study, ...(t.series === undefined ? {} : { series: t.series }) };
      for await (const l of listSubset(
        o.source,
        { scopes: [scope], filters: [] },
        { pageSize: o.pageSize ?? 1000, onEvent: emit, ...(o.signal === undefined ? {} : { signal: o.signal }) },
      )) {
        if (!l.ok) throw new HcexportError(`${l.name}: ${l.reason}`);
        refs.push(l.ref);
      }
    });
    s.listed = refs.length;
    if (o.rendered !== undefined) {
      const pool = new TaskPool(o.concurrency ?? 8);
      for (const ref of refs) {
        const p = wadoPathOf({ study: ref.study, series: ref.series, instance: ref.instance });
        await pool.run(() =>
          attempt(`${p}/rendered`, () => getRendered(ref, `${p}/rendered`, renderedName(ref, o.rendered!))),
        );
      }
      await pool.drain();
    } else if (refs.length > 0) {
      const missing = new Map<string, InstanceRef>();
      for (const ref of refs) {
        if (await isFile(path.join(dest, instancePath(ref)))) s.skipped++;
        else missing.set(ref.instance, ref);
      }
      if (missing.size > 0)
        await attempt(base, async () => {
          await retrieveGroup(
            ctx,
            base,
            { study: t.study, ...(t.series === undefined ? {} : { series: t.series }) },
            missing,
          );
        });
    }
  }
  await ctx.queue.flush();
  if (commitFault !== undefined) throw new DestinationError(dest, commitFault, s.downloaded);
  s.durationMs = clock.now() - started;
  emit({ kind: "dicomweb.done", summary: s });
  return s;

  async function getRendered(ref: InstanceRef, wadoPath: string, rel: string): Promise<void> {
    const type = o.rendered === "png" ? "image/png" : "image/jpeg";
    const r = await fetchBody(wadoPath, type);
    if (r.contentType.type !== type)
      throw new HcexportError(
        `${wadoPath}: asked for ${type}, the server answered ${r.contentType.type || "without a Content-Type"}`,
      );
    if (!imageComplete(o.rendered!, r.body)) throw new IntegrityError(`${wadoPath}: not a whole ${type} image`);
    await write(rel, r.body, r.digested);
    void ref;
  }

  async function getFrames(ref: InstanceRef, frames: readonly number[], m: Metadata[number]): Promise<void> {
    const dir = `${ref.study}/${ref.series}/${ref.instance}/frames`;
    const count = Number(m["00280008"]?.Value?.[0] ?? 1);
    const beyond = frames.filter((f) => f > count);
    if (Number.isFinite(count) && beyond.length > 0)
      throw new HcexportError(`frames ${beyond.join(",")} do not exist: the instance has ${count} frame(s)`);
    if (o.rendered !== undefined) {
      for (const f of frames)
        await getRendered(ref, `${base}/frames/${f}/rendered`, `${dir}/${f}.${o.rendered === "png" ? "png" : "jpg"}`);
      return;
    }
    const wadoPath = `${base}/frames/${frames.join(",")}`;
    s.retrieveRequests++;
    let res;
    try {
      res = await o.source.retrieve(wadoPath, ACCEPT_FRAMES, o.signal);
    } catch (err) {
      // A server that does not offer frames as stored: its default (explicit VR little endian).
      if (!(err instanceof HttpError && (err.status === 406 || err.status === 400))) throw err;
      s.retrieveRequests++;
      res = await o.source.retrieve(wadoPath, ACCEPT_FRAMES_DEFAULT, o.signal);
    }
    const ct = parseContentType(headerOf(res.headers, "content-type"));
    if (ct.type !== "multipart/related") {
      res.body.destroy?.();
      throw new HcexportError(
        `${wadoPath}: expected multipart/related, the server answered ${ct.type || "without a Content-Type"}`,
      );
    }
    const native = nativeFrameBytes(m);
    const parts: Array<{ rel: string; body: Buffer; digested: boolean }> = [];
    try {
      await eachPart(res.body, ct.params["boundary"], async (headers, body) => {
        const i = parts.length;
        if (i >= frames.length)
          throw new IntegrityError(`${wadoPath}: more parts than the ${frames.length} frame(s) asked`);
        const type = headers["content-type"] ?? "application/octet-stream";
        const ext = frameExtension(type);
        if (ext === undefined) throw new HcexportError(`${wadoPath}: a frame of unexpected type ${type.slice(0, 100)}`);
        const digest = new DigestVerifier(cheapestDigest(expectedDigests(headers)));
        const chunks: Buffer[] = [];
        let n = 0;
        for await (const c of body) {
          n += c.byteLength;
          if (n > MAX_BODY) throw new HcexportError(`${wadoPath}: a frame exceeds ${MAX_BODY} bytes`);
          digest.update(c);
          chunks.push(c);
        }
        const bytes = Buffer.concat(chunks);
        const mismatch = digest.active ? digest.mismatch() : undefined;
        if (mismatch !== undefined) throw new IntegrityError(`${wadoPath} frame ${frames[i]}: ${mismatch}`);
        const ts = parseContentType(type).params["transfer-syntax"];
        // Native frames have a size the metadata fixes (an odd total is padded by one byte).
        if (
          ext === "raw" &&
          native !== undefined &&
          (ts === undefined || ts.startsWith("1.2.840.10008.1.2.1") || ts === "1.2.840.10008.1.2") &&
          bytes.length !== native &&
          bytes.length !== native + 1
        )
          throw new IntegrityError(`${wadoPath} frame ${frames[i]}: ${bytes.length} bytes, the image needs ${native}`);
        parts.push({ rel: `${dir}/${frames[i]}.${ext}`, body: bytes, digested: digest.active });
      });
    } catch (err) {
      res.body.destroy?.();
      throw err;
    }
    if (parts.length !== frames.length)
      throw new IntegrityError(`${wadoPath}: ${parts.length} part(s) for ${frames.length} frame(s) asked`);
    for (const p of parts) await write(p.rel, p.body, p.digested);
  }
}

function renderedName(ref: InstanceRef, type: "png" | "jpeg"): string {
  return `${ref.study}/${ref.series}/${ref.instance}.${type === "png" ? "png" : "jpg"}`;
}

/** Bytes of one native frame from Rows × Columns × Samples per Pixel × Bits Allocated, when known. */
function nativeFrameBytes(m: Metadata[number]): number | undefined {
  const v = (tag: string) => Number(m[tag]?.Value?.[0]);
  const bits = v("00280100");
  const n = v("00280010") * v("00280011") * (Number.isFinite(v("00280002")) ? v("00280002") : 1) * bits;
  return Number.isFinite(n) && n > 0 && bits % 8 === 0 ? n / 8 : undefined;
}

/** The metadata is a JSON array of the target's instances (each carrying the UIDs asked for). */
function checkMetadata(body: Buffer, t: GetTarget, wadoPath: string): Metadata {
  let rows: unknown;
  try {
    rows = JSON.parse(body.toString("utf8"));
  } catch {
    throw new IntegrityError(`${wadoPath}/metadata: not JSON`);
  }
  if (!Array.isArray(rows) || rows.length === 0 || rows.some((r) => r === null || typeof r !== "object"))
    throw new HcexportError(`${wadoPath}/metadata: not a non-empty DICOM JSON array`);
  for (const row of rows as Metadata) {
    for (const [tag, want] of [
      ["0020000D", t.study],
      ["0020000E", t.series],
      ["00080018", t.instance],
    ] as const) {
      const got = row[tag]?.Value?.[0];
      if (want !== undefined && got !== undefined && got !== want)
        throw new HcexportError(`${wadoPath}/metadata: an instance of ${tag} ${String(got).slice(0, 80)}, not ${want}`);
    }
  }
  return rows as Metadata;
}

async function isFile(p: string): Promise<boolean> {
  return lstat(p).then(
    (st) => st.isFile() && st.size > 0,
    () => false,
  );
}

function reasonOf(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error && cause.message !== err.message ? `${err.message} (${cause.message})` : err.message;
  }
  return String(err);
}
