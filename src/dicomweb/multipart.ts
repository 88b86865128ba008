/**
 * A streaming `multipart/related` parser (RFC 2046 §5.1, as DICOMweb uses it in PS3.18 §8.6.1.2):
 * fed chunks of any size, it returns events — a part's headers, slices of its body, its end — and
 * holds back only the few bytes that could be the start of a delimiter. A study of any size
 * passes through in constant memory.
 */

export type MultipartEvent =
  | { readonly kind: "part"; readonly headers: Readonly<Record<string, string>> }
  | { readonly kind: "data"; readonly chunk: Buffer }
  | { readonly kind: "end" };

export class MultipartError extends Error {
  override readonly name = "MultipartError";
}

const MAX_HEADER_BYTES = 16 * 1024;
const MAX_PREAMBLE_BYTES = 64 * 1024;
const CRLF = Buffer.from("\r\n");
const HEADER_END = Buffer.from("\r\n\r\n");

type State = "preamble" | "after-boundary" | "headers" | "body" | "done";

export class MultipartParser {
  readonly #dashBoundary: Buffer;
  /** `CRLF--boundary`: what ends a body. */
  readonly #delimiter: Buffer;
  #state: State = "preamble";
  #buf: Buffer = Buffer.alloc(0);
  #seen = 0;
  #parts = 0;

  /**
   * @param maxBoundary longest boundary accepted: RFC 2046 allows 70 characters, but a server may
   *   accept longer ones from real clients (Orthanc's STOW-RS client sends 73).
   */
  constructor(boundary: string, maxBoundary = 70) {
    if (boundary.length > maxBoundary || !/^[\x20-\x7e]+$/.test(boundary) || boundary.endsWith(" "))
      throw new MultipartError(`invalid multipart boundary ${JSON.stringify(boundary)}`);
    this.#dashBoundary = Buffer.from(`--${boundary}`, "latin1");
    this.#delimiter = Buffer.concat([CRLF, this.#dashBoundary]);
  }

  /** Number of parts started so far. */
  get parts(): number {
    return this.#parts;
  }

  push(chunk: Uint8Array): MultipartEvent[] {
    if (this.#state === "done") return []; // the epilogue is ignored
    const data = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const events: MultipartEvent[] = [];
    this.#buf = this.#joined(data, events);
    for (;;) {
      const progressed = this.#step(events);
      if (!progressed) break;
    }
    return events;
  }

  /**
   * What to parse next: the bytes held back and the new chunk. Inside a body the bytes held back
   * are a tail shorter than a delimiter that might begin one; unless one does begin there (once
   * per part at most), the tail is body and goes out as its own slice, and the chunk is parsed as
   * it came, its slices views of it. Copying each chunk behind the tail instead made a second copy
   * of every byte of every part, in a fresh allocation per chunk.
   */
  #joined(data: Buffer, events: MultipartEvent[]): Buffer {
    const held = this.#buf;
    if (held.length === 0) return data;
    const d = this.#delimiter.length;
    if (this.#state === "body" && held.length < d && data.length >= d) {
      // A delimiter starting in the tail ends within the tail and d - 1 bytes of the chunk.
      const at = Buffer.concat([held, data.subarray(0, d - 1)]).indexOf(this.#delimiter);
      if (at < 0 || at >= held.length) {
        events.push({ kind: "data", chunk: held });
        return data;
      }
    }
    return Buffer.concat([held, data]);
  }

  /** The body ended: it must have ended with the close delimiter `--boundary--`. */
  finish(): void {
    if (this.#state === "done") return;
    if (this.#state === "preamble")
      throw new MultipartError(
        "the multipart body has no boundary line (not the boundary its Content-Type announced?)",
      );
    throw new MultipartError(`the multipart body ended inside part ${this.#parts} (no closing boundary): truncated`);
  }

  #step(events: MultipartEvent[]): boolean {
    const buf = this.#buf;
    switch (this.#state) {
      case "preamble": {
        // The first boundary may open the body or follow a preamble ending in CRLF.
        if (
          buf.length >= this.#dashBoundary.length &&
          buf.subarray(0, this.#dashBoundary.length).equals(this.#dashBoundary)
        ) {
          this.#buf = buf.subarray(this.#dashBoundary.length);
          this.#state = "after-boundary";
          return true;
        }
        const at = buf.indexOf(this.#delimiter);
        if (at >= 0) {
          this.#buf = buf.subarray(at + this.#delimiter.length);
          this.#state = "after-boundary";
          return true;
        }
        this.#seen += Math.max(0, buf.length - this.#delimiter.length);
        if (this.#seen > MAX_PREAMBLE_BYTES)
          throw new MultipartError(`no multipart boundary in the first ${MAX_PREAMBLE_BYTES} bytes`);
        this.#buf =
          buf.length > this.#delimiter.length ? Buffer.from(buf.subarray(buf.length - this.#delimiter.length)) : buf;
        return false;
      }
      case "after-boundary": {
        if (buf.length < 2) return false;
        if (buf[0] === 0x2d && buf[1] === 0x2d) {
          this.#state = "done";
          this.#buf = Buffer.alloc(0);
          return true;
        }
        // Transport padding (spaces/tabs), then CRLF.
        const eol = buf.indexOf(CRLF);
        if (eol < 0) {
          if (buf.length > 1024) throw new MultipartError("garbage after a multipart boundary");
          return false;
        }
        if (!/^[ \t]*$/.test(buf.toString("latin1", 0, eol)))
          throw new MultipartError("garbage after a multipart boundary");
        this.#buf = buf.subarray(eol + 2);
        this.#state = "headers";
        return true;
      }
      case "headers": {
        // No headers at all: the blank line follows at once.
        if (buf.length >= 2 && buf[0] === 0x0d && buf[1] === 0x0a) {
          this.#startPart({}, events);
          this.#buf = buf.subarray(2);
          return true;
        }
        const end = buf.indexOf(HEADER_END);
        if (end < 0) {
          if (buf.length > MAX_HEADER_BYTES)
            throw new MultipartError(`a part's headers exceed ${MAX_HEADER_BYTES} bytes`);
          return false;
        }
        this.#startPart(parseHeaders(buf.toString("latin1", 0, end)), events);
        this.#buf = buf.subarray(end + 4);
        return true;
      }
      case "body": {
        const at = buf.indexOf(this.#delimiter);
        if (at >= 0) {
          if (at > 0) events.push({ kind: "data", chunk: buf.subarray(0, at) });
          events.push({ kind: "end" });
          this.#buf = buf.subarray(at + this.#delimiter.length);
          this.#state = "after-boundary";
          return true;
        }
        // Everything except a tail that could begin a delimiter is body.
        const keep = Math.min(buf.length, this.#delimiter.length - 1);
        const emit = buf.length - keep;
        if (emit > 0) {
          events.push({ kind: "data", chunk: buf.subarray(0, emit) });
          this.#buf = Buffer.from(buf.subarray(emit));
        }
        return false;
      }
      case "done":
        return false;
    }
  }

  #startPart(headers: Record<string, string>, events: MultipartEvent[]): void {
    this.#parts++;
    this.#state = "body";
    events.push({ kind: "part", headers });
  }
}

/** Header lines (`Name: value`, folded lines joined) with lower-case names. */
export function parseHeaders(block: string): Record<string, string> {
  const out: Record<string, string> = {};
  let last: string | undefined;
  for (const line of block.split("\r\n")) {
    if (/^[ \t]/.test(line) && last !== undefined) {
      out[last] += ` ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) throw new MultipartError(`malformed part header line ${JSON.stringify(line.slice(0, 80))}`);
    last = line.slice(0, colon).trim().toLowerCase();
    out[last] = line.slice(colon + 1).trim();
  }
  return out;
}

/** Media type and parameters of a Content-Type header (`type/sub; a=b; c="d"`), lower-cased names. */
export function parseContentType(header: string | undefined): { type: string; params: Record<string, string> } {
  const parts = splitParams(header ?? "");
  const type = (parts.shift() ?? "").trim().toLowerCase();
  const params: Record<string, string> = {};
  for (const p of parts) {
    const eq = p.indexOf("=");
    if (eq <= 0) continue;
    let v = p.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1).replace(/\\(.)/g, "$1");
    params[p.slice(0, eq).trim().toLowerCase()] = v;
  }
  return { type, params };
}

/** Splits on `;` outside quoted strings. */
function splitParams(s: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === "\\" && quoted) {
      cur += c + (s[i + 1] ?? "");
      i++;
    } else if (c === '"') {
      quoted = !quoted;
      cur += c;
    } else if (c === ";" && !quoted) {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out;
}
