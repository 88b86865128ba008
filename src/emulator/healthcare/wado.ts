import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { digestBase64, type DigestAlgorithm } from "../../core/expected-content.ts";
import { decideFault, faultsApply } from "../faults.ts";
import { ApiError } from "../http-util.ts";
import { sendMedia } from "../media.ts";
import { transcodeToJpegBaseline } from "./export-formats.ts";
import { JPEG_BASELINE } from "./pixels.ts";
import type { RequestContext } from "../types.ts";
import type { StoreInstance } from "./model.ts";

const STORED_TS = "1.2.840.10008.1.2.1";

/** What the client accepts: single-part DICOM, or multipart/related of DICOM parts. */
export function negotiate(accept: string | undefined, single: boolean): "single" | "multipart" {
  const a = (accept ?? "").toLowerCase();
  const ts = /transfer-syntax=([^;,\s]+)/.exec(a)?.[1];
  if (ts !== undefined && ts !== "*" && ts !== STORED_TS && ts !== JPEG_BASELINE) {
    throw new ApiError(
      406,
      "notAcceptable",
      `the emulator transcodes only to JPEG Baseline (${JPEG_BASELINE}), not to transfer syntax ${ts}`,
      { rpcStatus: "FAILED_PRECONDITION" },
    );
  }
  if (a.includes("multipart/related")) return "multipart";
  if (a.includes("application/dicom") || a.includes("*/*")) return single ? "single" : "multipart";
  if (a === "") return "multipart";
  throw new ApiError(
    406,
    "notAcceptable",
    `cannot produce "${accept}"; use application/dicom or multipart/related; type="application/dicom"`,
    { rpcStatus: "FAILED_PRECONDITION" },
  );
}

/** Retrieves instances: one as single-part application/dicom (with body faults), or a streamed multipart/related response. */
export async function retrieve(
  req: IncomingMessage,
  res: ServerResponse,
  instances: readonly StoreInstance[],
  single: boolean,
  ctx: RequestContext,
): Promise<void> {
  if (instances.length === 0) throw new ApiError(404, "notFound", "no such DICOM resource", { rpcStatus: "NOT_FOUND" });
  const mode = negotiate(req.headers.accept, single);
  // JPEG Baseline asked for: every instance transcoded before the first byte is sent, so one that
  // cannot be (not 8-bit native) is a clean 406 rather than a cut stream.
  const jpeg = /transfer-syntax=1\.2\.840\.10008\.1\.2\.4\.50(?![.\d])/i.test(req.headers.accept ?? "");
  let transcoded: Buffer[] | undefined;
  if (jpeg) {
    try {
      transcoded = instances.map((i) => (syntaxOf(i) === JPEG_BASELINE ? i.data() : transcodeToJpegBaseline(i.data())));
    } catch (err) {
      throw new ApiError(406, "notAcceptable", `cannot transcode to JPEG Baseline: ${(err as Error).message}`, {
        rpcStatus: "FAILED_PRECONDITION",
      });
    }
  }
  const bytesOf = (k: number) => transcoded?.[k] ?? instances[k]!.data();
  if (mode === "single") {
    const data = bytesOf(0);
    sendMedia(
      req,
      res,
      data,
      {
        "content-type": `application/dicom; transfer-syntax=${jpeg ? JPEG_BASELINE : syntaxOf(instances[0]!)}`,
        ...reprDigest(req.headers["want-repr-digest"], data),
      },
      ctx,
    );
    return;
  }
  // A reset or truncation fault cuts the stream inside a random part (corruption is not applied:
  // parts carry no digest, so it could not be detected by any client).
  const fault = faultsApply(ctx.faults, new URL(req.url ?? "/", "http://x").pathname)
    ? decideFault({ ...ctx.faults, rate429: 0, rate503: 0, corruptRate: 0 }, ctx.random, true)
    : { kind: "none" as const };
  const cutAt = fault.kind === "reset" || fault.kind === "truncate" ? Math.floor(ctx.random() * instances.length) : -1;
  const boundary = randomBytes(12).toString("hex");
  res.writeHead(200, { "content-type": `multipart/related; type="application/dicom"; boundary=${boundary}` });
  for (const [i, inst] of instances.entries()) {
    const head = `--${boundary}\r\nContent-Type: application/dicom; transfer-syntax=${jpeg ? JPEG_BASELINE : syntaxOf(inst)}\r\n\r\n`;
    if (!res.write(head)) await drain(res);
    const data = bytesOf(i);
    if (i === cutAt) {
      res.write(data.subarray(0, Math.max(1, Math.floor(data.length * ctx.random()))), () => {
        const socket = res.socket;
        if (socket === null) return;
        if (fault.kind === "reset") socket.resetAndDestroy();
        else socket.end(() => socket.destroy());
      });
      return;
    }
    if (!res.write(data)) await drain(res);
    if (!res.write("\r\n")) await drain(res);
  }
  res.end(`--${boundary}--\r\n`);
}

/** The transfer syntax an instance is stored in (generated ones: explicit VR little endian). */
function syntaxOf(i: StoreInstance): string {
  return "kind" in i ? i.transferSyntax : STORED_TS;
}

/**
 * RFC 9530: a client that sends `Want-Repr-Digest` gets `Repr-Digest` in the one algorithm it
 * prefers most (the highest weight; on a tie the first of crc32c, sha-256, md5), of those three
 * (the Healthcare API does not document one; the emulator offers it so clients can prove that
 * they verify it — corruption faults keep the true digest). One, not every one asked for: the RFC
 * lets the server choose, one digest proves the bytes, and the local cloud shares the machine
 * with the client it serves (hashing each body with sha-256 and md5 cost it 3.8 s of a 10,000 ×
 * 150 KB pull, cpu-prof). crc32c is 4 big-endian bytes, as the registry defines it and GCS sends it.
 */
export function reprDigest(want: string | string[] | undefined, data: Buffer): Record<string, string> {
  const asked = (Array.isArray(want) ? want.join(",") : (want ?? "")).toLowerCase();
  let best: { alg: DigestAlgorithm; weight: number } | undefined;
  for (const alg of ["crc32c", "sha-256", "md5"] as const) {
    const m = new RegExp(`(?:^|[,\\s])${alg}\\s*=\\s*(\\d+)`).exec(asked);
    const weight = m === null ? 0 : Number(m[1]);
    if (weight > 0 && (best === undefined || weight > best.weight)) best = { alg, weight };
  }
  return best === undefined ? {} : { "repr-digest": `${best.alg}=:${digestOf(best.alg, data)}:` };
}

/** Digests of the bodies a store keeps (`keepDigests`: a stored instance's bytes, `emulator --stored`). */
const digests = new WeakMap<Buffer, Partial<Record<DigestAlgorithm, string>>>();

/** The body's digest: remembered for a kept body, computed afresh for one rendered per request. */
function digestOf(alg: DigestAlgorithm, data: Buffer): string {
  const known = digests.get(data);
  if (known === undefined) return digestBase64(alg, data);
  return (known[alg] ??= digestBase64(alg, data));
}

/**
 * Marks `data` as bytes the store keeps and serves again: their digests are remembered, the
 * CRC32C computed now, as a store computes a checksum when it stores (GCS does for every object).
 */
export function keepDigests(data: Buffer): void {
  if (!digests.has(data)) digests.set(data, { crc32c: digestBase64("crc32c", data) });
}

function drain(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    res.once("drain", resolve);
    res.once("close", resolve);
  });
}
