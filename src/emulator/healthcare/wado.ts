import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { GeneratedInstance } from "../dataset/instances.ts";
import { ApiError } from "../http-util.ts";
import { sendMedia } from "../media.ts";
import type { RequestContext } from "../types.ts";

const STORED_TS = "1.2.840.10008.1.2.1";

/** What the client accepts: single-part DICOM, or multipart/related of DICOM parts. */
export function negotiate(accept: string | undefined, single: boolean): "single" | "multipart" {
  const a = (accept ?? "").toLowerCase();
  const ts = /transfer-syntax=([^;,\s]+)/.exec(a)?.[1];
  if (ts !== undefined && ts !== "*" && ts !== STORED_TS) {
    throw new ApiError(406, "notAcceptable", `the emulator stores explicit VR little endian and cannot transcode to transfer syntax ${ts}`, { rpcStatus: "FAILED_PRECONDITION" });
  }
  if (a.includes("multipart/related")) return "multipart";
  if (a.includes("application/dicom") || a.includes("*/*")) return single ? "single" : "multipart";
  if (a === "") return "multipart";
  throw new ApiError(406, "notAcceptable", `cannot produce "${accept}"; use application/dicom or multipart/related; type="application/dicom"`, { rpcStatus: "FAILED_PRECONDITION" });
}

/** Retrieves instances: one as single-part application/dicom (with body faults), or a streamed multipart/related response. */
export async function retrieve(req: IncomingMessage, res: ServerResponse, instances: readonly GeneratedInstance[], single: boolean, ctx: RequestContext): Promise<void> {
  if (instances.length === 0) throw new ApiError(404, "notFound", "no such DICOM resource", { rpcStatus: "NOT_FOUND" });
  const mode = negotiate(req.headers.accept, single);
  if (mode === "single") {
    sendMedia(req, res, instances[0]!.data(), { "content-type": `application/dicom; transfer-syntax=${STORED_TS}` }, ctx);
    return;
  }
  const boundary = randomBytes(12).toString("hex");
  res.writeHead(200, { "content-type": `multipart/related; type="application/dicom"; boundary=${boundary}` });
  for (const inst of instances) {
    const head = `--${boundary}\r\nContent-Type: application/dicom; transfer-syntax=${STORED_TS}\r\n\r\n`;
    if (!res.write(head)) await drain(res);
    if (!res.write(inst.data())) await drain(res);
    if (!res.write("\r\n")) await drain(res);
  }
  res.end(`--${boundary}--\r\n`);
}

function drain(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    res.once("drain", resolve);
    res.once("close", resolve);
  });
}
