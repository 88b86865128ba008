import type { IncomingMessage, ServerResponse } from "node:http";
import { decideFault, faultsApply } from "./faults.ts";
import type { RequestContext } from "./types.ts";

/**
 * Sends a media body, honouring `Range` (206 / 416) and the body faults: a reset destroys the
 * socket mid-body, a truncation promises the full length and ends early, a corruption flips bytes
 * while the caller's (true) hash headers stay.
 */
export function sendMedia(
  req: IncomingMessage,
  res: ServerResponse,
  data: Buffer,
  headers: Record<string, string>,
  ctx: RequestContext,
): void {
  let status = 200;
  let body = data;
  const out: Record<string, string | number> = { ...headers, "accept-ranges": "bytes" };
  const range = parseRange(req.headers.range, data.length);
  if (range === "unsatisfiable") {
    res.writeHead(416, {
      "content-range": `bytes */${data.length}`,
      "content-type": "application/json; charset=UTF-8",
    });
    res.end(
      JSON.stringify({
        error: {
          code: 416,
          message: "Request range not satisfiable",
          errors: [
            { domain: "global", reason: "requestedRangeNotSatisfiable", message: "Request range not satisfiable" },
          ],
        },
      }),
    );
    return;
  }
  if (range !== undefined) {
    status = 206;
    body = data.subarray(range.start, range.end + 1);
    out["content-range"] = `bytes ${range.start}-${range.end}/${data.length}`;
  }
  out["content-length"] = body.length;
  const path = new URL(req.url ?? "/", "http://x").pathname;
  const fault =
    faultsApply(ctx.faults, path) && body.length > 1
      ? decideFault({ ...ctx.faults, rate429: 0, rate503: 0 }, ctx.random, true)
      : { kind: "none" as const };
  if (req.method === "HEAD") {
    res.writeHead(status, out);
    res.end();
    return;
  }
  switch (fault.kind) {
    case "corrupt": {
      const bad = Buffer.from(body);
      const at = Math.floor(ctx.random() * bad.length);
      bad[at] = bad[at]! ^ 0xff;
      res.writeHead(status, out);
      res.end(bad);
      return;
    }
    case "truncate":
    case "reset": {
      res.writeHead(status, out);
      const cut = Math.max(1, Math.floor(body.length * (0.2 + 0.6 * ctx.random())));
      res.write(body.subarray(0, cut), () => {
        const socket = res.socket;
        if (socket === null) return;
        if (fault.kind === "reset") socket.resetAndDestroy();
        else socket.end(() => socket.destroy());
      });
      return;
    }
    default:
      res.writeHead(status, out);
      res.end(body);
  }
}

/** Parses a single `bytes=a-b` / `bytes=a-` / `bytes=-n` range. Invalid ranges are ignored (full body), like GCS. */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | "unsatisfiable" | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (m === null || (m[1] === "" && m[2] === "")) return undefined;
  if (m[1] === "") {
    const n = Number(m[2]);
    if (n === 0) return "unsatisfiable";
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size) return "unsatisfiable";
  if (end < start) return undefined;
  return { start, end };
}
