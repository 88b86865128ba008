import { createServer, type IncomingMessage, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { gunzipSync } from "node:zlib";
import { crc32cBase64, md5Base64 } from "../../src/core/hashing.ts";

/**
 * A small loopback HTTP server that speaks just enough of the GCS JSON API (object listing +
 * media), of DICOMweb (QIDO instances/studies + WADO instance) and of FHIR (a resource read + an
 * attachment URL) — and misbehaves on demand, per request: it stalls before the headers or in the
 * middle of a body, serves endless bodies, lies about sizes and hashes, cycles page tokens,
 * transcodes gzip like GCS, redirects (to another host too), echoes the request (credentials
 * included) in error bodies and puts ANSI escapes in error messages. Every request it receives
 * is recorded (method, url, headers, which connection) for assertions.
 */

/** What one request gets instead of (or on top of) the normal answer. */
export type Misbehaviour =
  | { readonly kind: "ok" }
  /** Never answer: the client must time out on the headers. */
  | { readonly kind: "stall-headers" }
  /** Send the headers (with the true Content-Length) and `afterBytes` of the body, then nothing. */
  | { readonly kind: "stall-body"; readonly afterBytes?: number }
  /** Send the headers without a length, the true body, then zero bytes forever (chunked). */
  | { readonly kind: "endless" }
  /** Drop the connection before answering. */
  | { readonly kind: "reset" }
  | {
      readonly kind: "status";
      readonly status: number;
      readonly body?: string;
      readonly headers?: Readonly<Record<string, string>>;
    }
  /** An error whose body quotes the request back, headers (credentials) included. */
  | { readonly kind: "echo"; readonly status: number }
  | { readonly kind: "redirect"; readonly location: string; readonly status?: number };

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  /** Connections are numbered from 1 in the order they were accepted. */
  readonly connection: number;
  readonly at: number;
}

/** A GCS object: its stored bytes and what the listing says about it (lies allowed). */
export interface HostileObject {
  readonly name: string;
  /** The stored bytes (gzip bytes when `contentEncoding` is gzip). */
  readonly data: Buffer;
  readonly generation?: string;
  readonly contentEncoding?: string;
  /** What the listing claims; default: the truth. */
  readonly listedSize?: number;
  /** null: omitted from the listing (an object without a hash). */
  readonly crc32c?: string | null;
  readonly md5Hash?: string | null;
  readonly etag?: string;
}

export interface HostileInstance {
  readonly study: string;
  readonly series: string;
  readonly instance: string;
  readonly data: Buffer;
}

interface Script {
  readonly match: (r: RecordedRequest) => boolean;
  readonly plan: readonly Misbehaviour[];
  /** Whether the last entry applies to every later request (default: later ones are ok). */
  readonly repeatLast: boolean;
  used: number;
}

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
  /** Sent without Content-Length (chunked), like a GCS transcoded download. */
  readonly chunked?: boolean;
}

export class HostileServer {
  readonly requests: RecordedRequest[] = [];
  objects: HostileObject[] = [];
  /** Items per listing page. */
  pageSize = 1000;
  /** When set, the listing's page tokens go round this cycle forever (pages stay as configured). */
  cycleTokens: readonly string[] | undefined;
  /** When set with `cycleTokens`: every page holds this many new names (else pages are empty). */
  namesPerCyclePage = 0;
  instances: HostileInstance[] = [];
  /** FHIR resources by `Type/ID`; attachments at `/files/NAME`. */
  readonly fhir = new Map<string, unknown>();
  readonly files = new Map<string, Buffer>();
  readonly #scripts: Script[] = [];
  readonly #sockets = new Set<Socket>();
  readonly #server = createServer((req, res) => this.#handle(req, res));
  #connections = 0;
  #url = "";

  /** `http://127.0.0.1:PORT` (or `http://localhost:PORT` with `host: "localhost"`). */
  get url(): string {
    return this.#url;
  }

  static async start(host: "127.0.0.1" | "localhost" = "127.0.0.1"): Promise<HostileServer> {
    const s = new HostileServer();
    s.#server.on("connection", (socket: Socket & { hcxId?: number }) => {
      socket.hcxId = ++s.#connections;
      s.#sockets.add(socket);
      socket.on("close", () => s.#sockets.delete(socket));
    });
    await new Promise<void>((r) => s.#server.listen(0, "127.0.0.1", r));
    s.#url = `http://${host}:${(s.#server.address() as AddressInfo).port}`;
    return s;
  }

  /**
   * Requests matching `match` get `plan[0]`, `plan[1]`, … in turn; after the plan they are
   * answered normally, or with the last entry again when `repeatLast`.
   */
  script(match: RegExp | ((r: RecordedRequest) => boolean), plan: readonly Misbehaviour[], repeatLast = false): void {
    const fn = match instanceof RegExp ? (r: RecordedRequest) => match.test(r.url) : match;
    this.#scripts.push({ match: fn, plan, repeatLast, used: 0 });
  }

  /** Forgets scripts and recorded requests (objects, instances and resources stay). */
  reset(): void {
    this.#scripts.length = 0;
    this.requests.length = 0;
    this.cycleTokens = undefined;
    this.namesPerCyclePage = 0;
  }

  requestsTo(pattern: RegExp): RecordedRequest[] {
    return this.requests.filter((r) => pattern.test(r.url));
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const rec: RecordedRequest = {
      method: req.method ?? "GET",
      url: req.url ?? "/",
      headers: req.headers,
      connection: (req.socket as Socket & { hcxId?: number }).hcxId ?? 0,
      at: performance.now(),
    };
    this.requests.push(rec);
    req.resume();
    const script = this.#scripts.find((s) => s.match(rec) && (s.used < s.plan.length || s.repeatLast));
    let how: Misbehaviour = { kind: "ok" };
    if (script !== undefined) how = script.plan[Math.min(script.used++, script.plan.length - 1)]!;
    switch (how.kind) {
      case "stall-headers":
        return; // the socket stays open until the client gives up (or close())
      case "reset":
        req.socket.destroy();
        return;
      case "status":
        res.writeHead(how.status, { "content-type": "application/json", ...how.headers });
        res.end(how.body ?? JSON.stringify({ error: { code: how.status, message: `HTTP ${how.status}` } }));
        return;
      case "echo":
        res.writeHead(how.status, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            error: { code: how.status, message: `denied: ${rec.method} ${rec.url} ${JSON.stringify(rec.headers)}` },
          }),
        );
        return;
      case "redirect":
        res.writeHead(how.status ?? 302, { location: how.location, "content-length": "0" });
        res.end();
        return;
    }
    let answer: Answer;
    try {
      answer = this.#route(rec);
    } catch (err) {
      answer = json(500, { error: { code: 500, message: String(err) } });
    }
    if (how.kind === "ok") {
      res.writeHead(answer.status, answer.chunked ? answer.headers : withLength(answer));
      res.end(answer.body);
    } else if (how.kind === "stall-body") {
      res.writeHead(answer.status, withLength(answer));
      res.write(answer.body.subarray(0, how.afterBytes ?? Math.floor(answer.body.length / 2)));
    } else {
      const { "content-length": _drop, ...headers } = answer.headers;
      res.writeHead(answer.status, headers);
      res.write(answer.body);
      const filler = Buffer.alloc(64 * 1024);
      const pump = () => {
        while (!res.destroyed && res.write(filler));
        if (!res.destroyed) res.once("drain", pump);
      };
      pump();
    }
  }

  #route(r: RecordedRequest): Answer {
    const u = new URL(r.url, "http://x");
    let m = /^\/storage\/v1\/b\/([^/]+)\/o$/.exec(u.pathname);
    if (m !== null) return this.#list(u);
    m = /^(?:\/download)?\/storage\/v1\/b\/([^/]+)\/o\/(.+)$/.exec(u.pathname);
    if (m !== null) return this.#media(decodeURIComponent(m[2]!), r);
    if (u.pathname.endsWith("/dicomWeb/instances")) return this.#qido(u);
    if (u.pathname.endsWith("/dicomWeb/studies")) return json(200, []);
    m = /\/dicomWeb\/studies\/([\d.]+)\/series\/([\d.]+)\/instances\/([\d.]+)$/.exec(u.pathname);
    if (m !== null) {
      const inst = this.instances.find((i) => i.study === m![1] && i.series === m![2] && i.instance === m![3]);
      if (inst === undefined) return json(404, { error: "no such instance" });
      return { status: 200, headers: { "content-type": "application/dicom" }, body: inst.data };
    }
    m = /\/fhir\/(\w+\/[\w.-]+)$/.exec(u.pathname);
    if (m !== null) {
      const resource = this.fhir.get(m[1]!);
      return resource === undefined ? json(404, { resourceType: "OperationOutcome" }) : json(200, resource);
    }
    m = /^\/files\/(.+)$/.exec(u.pathname);
    if (m !== null) {
      const data = this.files.get(decodeURIComponent(m[1]!));
      if (data !== undefined) return { status: 200, headers: { "content-type": "text/csv" }, body: data };
    }
    return json(404, { error: { code: 404, message: `nothing at ${u.pathname}` } });
  }

  #list(u: URL): Answer {
    const prefix = u.searchParams.get("prefix") ?? "";
    const token = u.searchParams.get("pageToken") ?? "";
    const sorted = this.objects
      .filter((o) => o.name.startsWith(prefix))
      .sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
    if (this.cycleTokens !== undefined) {
      const at = token === "" ? -1 : this.cycleTokens.indexOf(token);
      const next = this.cycleTokens[(at + 1) % this.cycleTokens.length]!;
      const page = Array.from({ length: this.namesPerCyclePage }, (_, i) => ({
        name: `${prefix}page-${String(this.requestsTo(/\/o\?/).length).padStart(6, "0")}-${i}`,
        size: "1",
        generation: "1",
        crc32c: crc32cBase64(Buffer.from("x")),
      }));
      return json(200, { items: page, nextPageToken: next });
    }
    const start = token === "" ? 0 : Number(token);
    const items = sorted.slice(start, start + this.pageSize).map((o) => ({
      name: o.name,
      size: String(o.listedSize ?? o.data.length),
      generation: o.generation ?? "1",
      ...(o.crc32c === null ? {} : { crc32c: o.crc32c ?? crc32cBase64(o.data) }),
      ...(o.md5Hash === null ? {} : { md5Hash: o.md5Hash ?? md5Base64(o.data) }),
      ...(o.etag === undefined ? {} : { etag: o.etag }),
      ...(o.contentEncoding === undefined ? {} : { contentEncoding: o.contentEncoding }),
    }));
    const end = start + this.pageSize;
    return json(200, { items, ...(end < sorted.length ? { nextPageToken: String(end) } : {}) });
  }

  #media(name: string, r: RecordedRequest): Answer {
    const o = this.objects.find((x) => x.name === name);
    if (o === undefined) return json(404, { error: { code: 404, message: "No such object" } });
    const headers: Record<string, string> = {
      "content-type": "application/octet-stream",
      "x-goog-hash": `crc32c=${crc32cBase64(o.data)},md5=${md5Base64(o.data)}`,
      "x-goog-generation": o.generation ?? "1",
      "x-goog-stored-content-length": String(o.data.length),
      "x-goog-stored-content-encoding": o.contentEncoding ?? "identity",
    };
    if (o.contentEncoding === "gzip") {
      // GCS: decompressive transcoding unless the client accepts gzip.
      if (!/\bgzip\b/.test(String(r.headers["accept-encoding"] ?? "")))
        return { status: 200, headers, body: gunzipSync(o.data), chunked: true };
      headers["content-encoding"] = "gzip";
    }
    return { status: 200, headers, body: o.data };
  }

  #qido(u: URL): Answer {
    const limit = Number(u.searchParams.get("limit") ?? 1000);
    const offset = Number(u.searchParams.get("offset") ?? 0);
    const rows = this.instances.slice(offset, offset + limit).map((i) => ({
      "0020000D": { vr: "UI", Value: [i.study] },
      "0020000E": { vr: "UI", Value: [i.series] },
      "00080018": { vr: "UI", Value: [i.instance] },
    }));
    return json(200, rows, "application/dicom+json");
  }
}

function json(status: number, value: unknown, type = "application/json"): Answer {
  return { status, headers: { "content-type": type }, body: Buffer.from(JSON.stringify(value)) };
}

function withLength(a: Answer): Record<string, string> {
  return { ...a.headers, "content-length": String(a.body.length) };
}
