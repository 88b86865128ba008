/** One logged request. */
export interface RequestEntry {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  /** What the request was for, e.g. `object.media`, `object.list`, `upload`, `iam` (see {@link routeKind}). */
  readonly kind: string;
  /** Whether the request carried an `Authorization` header (never its value): `--emulator` must send none. */
  readonly authorized: boolean;
  /** The `Range` header as received, if any (ranged media downloads). */
  readonly range?: string;
  status: number;
}

/**
 * Classifies a request path (+ query) into a route kind, so tests and benchmarks can count e.g.
 * media downloads without parsing paths themselves.
 */
export function routeKind(path: string, query: string): string {
  if (path.startsWith("/_emulator/")) return "admin";
  if (path.startsWith("/upload/") || path.startsWith("/resumable/upload/")) return "upload";
  if (path.startsWith("/download/")) return "object.media";
  if (path.startsWith("/storage/v1/b")) {
    const rest = path.slice("/storage/v1/b".length);
    if (rest === "" || rest === "/") return "bucket.collection";
    const m = /^\/[^/]+(\/.*)?$/.exec(rest);
    const tail = m?.[1] ?? "";
    if (tail === "" || tail === "/") return "bucket";
    if (tail.startsWith("/iam")) return "iam";
    if (tail === "/o" || tail === "/o/") return "object.list";
    if (tail.startsWith("/o/")) return /(^|&)alt=media(&|$)/.test(query) ? "object.media" : "object.meta";
    return "storage.other";
  }
  if (/^\/v1(beta1)?\/projects\/[^/]+\/locations\//.test(path)) return "healthcare";
  if (/^\/v1\/projects\//.test(path)) return "resourcemanager";
  return "other";
}

/**
 * The requests a running emulator served, for tests and benchmarks: exact counters per
 * `METHOD kind` and per status, plus the most recent entries (bounded, so a benchmark of a million
 * downloads does not grow memory without limit).
 */
export class RequestLog {
  /** The most recent requests, oldest first (at most {@link RequestLog.MAX} are kept). */
  readonly entries: RequestEntry[] = [];
  static readonly MAX = 50_000;
  readonly #counts = new Map<string, number>();
  readonly #statuses = new Map<number, number>();
  /** Per `METHOD kind`: requests received whose response has not closed yet, and the most at once. */
  readonly #open = new Map<string, number>();
  readonly #peak = new Map<string, number>();
  #total = 0;

  /** Records a request; its status is filled in by {@link RequestLog.finished}. */
  add(method: string, path: string, query: string, authorized = false, range?: string): RequestEntry {
    const entry: RequestEntry = {
      method,
      path,
      query,
      kind: routeKind(path, query),
      authorized,
      ...(range === undefined ? {} : { range }),
      status: 0,
    };
    this.#total++;
    const key = `${method} ${entry.kind}`;
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
    const open = (this.#open.get(key) ?? 0) + 1;
    this.#open.set(key, open);
    if (open > (this.#peak.get(key) ?? 0)) this.#peak.set(key, open);
    if (this.entries.length >= RequestLog.MAX) this.entries.splice(0, RequestLog.MAX / 2);
    this.entries.push(entry);
    return entry;
  }

  finished(entry: RequestEntry, status: number): void {
    entry.status = status;
    this.#statuses.set(status, (this.#statuses.get(status) ?? 0) + 1);
  }

  /** The request's response closed (sent, or its connection gone): it no longer counts as in flight. Once per entry. */
  closed(entry: RequestEntry): void {
    const key = `${entry.method} ${entry.kind}`;
    const open = this.#open.get(key) ?? 0;
    if (open > 0) this.#open.set(key, open - 1);
  }

  /**
   * The most requests of one `METHOD kind` (e.g. `"GET object.media"`) in flight at once since the
   * last clear: received, their response not yet closed. What a client's concurrency really was.
   */
  peakInFlight(key: string): number {
    return this.#peak.get(key) ?? 0;
  }

  /** Requests counted since the last clear: all of them, or those of one `METHOD kind` (e.g. `"GET object.media"`). */
  count(key?: string): number {
    return key === undefined ? this.#total : (this.#counts.get(key) ?? 0);
  }

  /** Responses with this status since the last clear. */
  countStatus(status: number): number {
    return this.#statuses.get(status) ?? 0;
  }

  /** Media downloads (GET/HEAD of `alt=media` or the download path); with a prefix, among the retained entries only. */
  mediaGets(namePrefix = ""): number {
    if (namePrefix === "") return this.count("GET object.media") + this.count("HEAD object.media");
    let n = 0;
    for (const e of this.entries) {
      if (
        e.kind === "object.media" &&
        (e.method === "GET" || e.method === "HEAD") &&
        safeDecode(e.path).includes(namePrefix)
      )
        n++;
    }
    return n;
  }

  /** Counters as JSON (served at `GET /_emulator/requests`). */
  summary(): {
    total: number;
    mediaGets: number;
    byRoute: Record<string, number>;
    byStatus: Record<string, number>;
    peakInFlight: Record<string, number>;
  } {
    const sorted = (m: Map<string, number>) => Object.fromEntries([...m].sort(([a], [b]) => (a < b ? -1 : 1)));
    return {
      total: this.#total,
      mediaGets: this.mediaGets(),
      byRoute: sorted(this.#counts),
      byStatus: Object.fromEntries([...this.#statuses].map(([s, n]) => [String(s), n])),
      peakInFlight: sorted(this.#peak),
    };
  }

  /** Forgets the counters and entries; requests still in flight keep counting toward the next peak. */
  clear(): void {
    this.entries.length = 0;
    this.#counts.clear();
    this.#statuses.clear();
    this.#peak.clear();
    for (const [key, open] of this.#open) if (open > 0) this.#peak.set(key, open);
    this.#total = 0;
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
