import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { StoreInstance } from "./model.ts";
import { ApiError } from "../http-util.ts";
import { EXPLICIT_LE, JPEG_BASELINE, NATIVE_TS, pixelsOf, type PixelView } from "./pixels.ts";
import { encodeJpeg, frameImage, renderFrame } from "./render.ts";
import { reprDigest } from "./wado.ts";

/**
 * WADO-RS frames and rendered resources of one instance, as the Healthcare API serves them
 * (conformance statement: frames as multipart/related, rendered instances and frames as
 * `image/jpeg` (default) or `image/png`; no rendered study or series):
 *
 * - `…/instances/I/frames/N[,M…]`: `multipart/related; type="application/octet-stream"` (native
 *   explicit VR little endian by default; `transfer-syntax=*` as stored) or `type="image/jpeg"`
 *   (JPEG baseline); one part per frame in the order asked.
 * - `…/instances/I/rendered` (the first frame) and `…/frames/N/rendered`.
 *
 * Anything else the Accept header asks for is 406.
 */
export function framesOrRendered(
  req: IncomingMessage,
  res: ServerResponse,
  inst: StoreInstance,
  rest: readonly string[],
): boolean {
  if (rest.length === 1 && rest[0] === "rendered") {
    sendRendered(req, res, pixelsOf(inst.data()), 1);
    return true;
  }
  if (rest[0] !== "frames" || rest.length < 2 || rest.length > 3 || (rest.length === 3 && rest[2] !== "rendered"))
    return false;
  const list = rest[1]!.split(",").map((s) => (/^\d+$/.test(s.trim()) ? Number(s.trim()) : NaN));
  if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n < 1))
    throw invalid(`invalid frame list "${rest[1]}": frame numbers start at 1, separated by commas`);
  const view = pixelsOf(inst.data());
  for (const n of list) view.frame(n); // range check before any byte is sent
  if (rest.length === 3) {
    if (list.length !== 1) throw invalid("a rendered frame resource takes exactly one frame number");
    sendRendered(req, res, view, list[0]!);
    return true;
  }
  const as = negotiateFrames(req.headers.accept, view);
  const boundary = randomBytes(12).toString("hex");
  const parts: Buffer[] = [];
  for (const n of list) {
    const { body, contentType } = frameAs(view, n, as);
    parts.push(Buffer.from(`--${boundary}\r\nContent-Type: ${contentType}\r\n\r\n`), body, Buffer.from("\r\n"));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  const body = Buffer.concat(parts);
  res.writeHead(200, {
    "content-type": `multipart/related; type="${as === "jpeg" ? "image/jpeg" : "application/octet-stream"}"; boundary=${boundary}`,
    "content-length": body.length,
  });
  res.end(body);
  return true;
}

type FrameForm = "native" | "stored" | "jpeg";

function mediaRanges(accept: string | undefined): Array<{ type: string; params: Record<string, string> }> {
  return (accept ?? "")
    .split(/,(?=(?:[^"]*"[^"]*")*[^"]*$)/)
    .map((r) => r.trim())
    .filter((r) => r !== "")
    .map((r) => {
      const [type, ...ps] = r.split(";").map((x) => x.trim());
      const params: Record<string, string> = {};
      for (const p of ps) {
        const eq = p.indexOf("=");
        if (eq > 0)
          params[p.slice(0, eq).trim().toLowerCase()] = p
            .slice(eq + 1)
            .trim()
            .replace(/^"|"$/g, "");
      }
      return { type: type!.toLowerCase(), params };
    });
}

export function negotiateFrames(accept: string | undefined, view: PixelView): FrameForm {
  const ranges = mediaRanges(accept);
  if (ranges.length === 0) return "native";
  for (const r of ranges) {
    if (r.type === "*/*") return "native";
    if (r.type !== "multipart/related") continue;
    const type = (r.params["type"] ?? "application/octet-stream").toLowerCase();
    const ts = r.params["transfer-syntax"];
    if (type === "application/octet-stream") {
      if (ts === undefined || ts === EXPLICIT_LE) return "native";
      if (ts === "*") return "stored";
      if (ts === view.transferSyntax) return "stored";
    }
    if (type === "image/jpeg" && (ts === undefined || ts === JPEG_BASELINE)) {
      if (view.transferSyntax === JPEG_BASELINE || (view.bitsAllocated === 8 && NATIVE_TS.has(view.transferSyntax)))
        return "jpeg";
    }
  }
  throw new ApiError(
    406,
    "notAcceptable",
    `cannot produce frames as "${accept}"; use multipart/related; type="application/octet-stream"; transfer-syntax=* (or 1.2.840.10008.1.2.1), or type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50 for 8-bit images`,
    { rpcStatus: "FAILED_PRECONDITION" },
  );
}

function frameAs(view: PixelView, n: number, as: FrameForm): { body: Buffer; contentType: string } {
  if (as === "jpeg") {
    const body = view.transferSyntax === JPEG_BASELINE ? view.frame(n) : encodeJpeg(frameImage(view, n));
    return { body, contentType: `image/jpeg; transfer-syntax=${JPEG_BASELINE}` };
  }
  if (as === "stored" || NATIVE_TS.has(view.transferSyntax)) {
    const ts = NATIVE_TS.has(view.transferSyntax) ? EXPLICIT_LE : view.transferSyntax;
    return { body: view.frame(n), contentType: `application/octet-stream; transfer-syntax=${ts}` };
  }
  // Compressed as stored, native asked for: decoded (JPEG baseline only).
  const img = frameImage(view, n);
  return { body: Buffer.from(img.data), contentType: `application/octet-stream; transfer-syntax=${EXPLICIT_LE}` };
}

function sendRendered(req: IncomingMessage, res: ServerResponse, view: PixelView, n: number): void {
  const type = negotiateRendered(req.headers.accept);
  const body = renderFrame(view, n, type);
  res.writeHead(200, {
    "content-type": type,
    "content-length": body.length,
    ...reprDigest(req.headers["want-repr-digest"], body),
  });
  res.end(body);
}

export function negotiateRendered(accept: string | undefined): "image/png" | "image/jpeg" {
  const ranges = mediaRanges(accept);
  if (ranges.length === 0) return "image/jpeg";
  for (const r of ranges) {
    if (r.type === "image/jpeg" || r.type === "image/*" || r.type === "*/*") return "image/jpeg";
    if (r.type === "image/png") return "image/png";
  }
  throw new ApiError(406, "notAcceptable", `cannot render as "${accept}"; use image/jpeg or image/png`, {
    rpcStatus: "FAILED_PRECONDITION",
  });
}

function invalid(message: string): ApiError {
  return new ApiError(400, "invalid", message, { rpcStatus: "INVALID_ARGUMENT" });
}
