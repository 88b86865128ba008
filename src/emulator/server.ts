import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { decideFault, faultsApply, mergeFaults, seededRandom } from "./faults.ts";
import { EmulatorObjectStore } from "./gcs/object-store.ts";
import { createStorageService } from "./gcs/storage-service.ts";
import { ApiError, errorBody, readJson, sendError, sendJson } from "./http-util.ts";
import { ProjectRegistry } from "./projects.ts";
import { RequestLog } from "./request-log.ts";
import type { TlsMaterial } from "./tls.ts";
import { noFaults, type EmulatorService, type FaultConfig, type ObjectStore, type RequestContext } from "./types.ts";

export { RequestLog, routeKind, type RequestEntry } from "./request-log.ts";

export interface EmulatorOptions {
  /** 0 (default) picks a free port. */
  readonly port?: number;
  readonly host?: string;
  /** Keep state in this directory so it survives a restart; default in memory. */
  readonly dataDir?: string;
  readonly faults?: Partial<FaultConfig>;
  /** Extra services tried after storage (Healthcare, Resource Manager…). */
  readonly services?: (store: ObjectStore, projects: ProjectRegistry) => EmulatorService[];
  /** Known projects: id → number. */
  readonly projects?: Record<string, string>;
  /**
   * Serve HTTPS on the same port: `true` generates a CA and a server certificate for 127.0.0.1,
   * ::1 and localhost (kept under `dataDir/tls` when there is one, else in a temporary directory);
   * or give the material.
   */
  readonly tls?: boolean | TlsMaterial;
}

export interface RunningEmulator {
  readonly baseUrl: string;
  readonly port: number;
  readonly store: EmulatorObjectStore;
  readonly projects: ProjectRegistry;
  /** Mutable: tests and the admin endpoint change faults at run time. */
  faults: FaultConfig;
  readonly requests: RequestLog;
  /** With `tls`: the CA clients must trust, as PEM and as the file it was written to. */
  readonly tls?: { readonly caPem: string; readonly caPath: string };
  close(): Promise<void>;
}

/**
 * Starts the local cloud's HTTP server on loopback: admin (`/_emulator/…`), the GCS JSON API,
 * then the extra services; anything else is a 501 JSON error naming the method and path.
 */
export async function startEmulator(options: EmulatorOptions = {}): Promise<RunningEmulator> {
  const store = new EmulatorObjectStore(options.dataDir === undefined ? {} : { dataDir: options.dataDir });
  const projects = new ProjectRegistry(options.projects ?? {});
  const services: EmulatorService[] = [
    createStorageService(store, projects),
    ...(options.services?.(store, projects) ?? []),
  ];
  const requests = new RequestLog();
  let random = seededRandom(options.faults?.seed ?? 1);
  const state = {
    faults: { ...noFaults, ...options.faults } as FaultConfig,
  };
  let baseUrl = "";

  const tls = await tlsMaterial(options);
  const serverOptions = { keepAlive: true, keepAliveTimeout: 65_000, requestTimeout: 0 };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch(() => res.destroy());
  };
  const server: Server =
    tls === undefined
      ? createServer(serverOptions, onRequest)
      : (await import("node:https")).createServer({ ...serverOptions, key: tls.key, cert: tls.cert }, onRequest);
  server.headersTimeout = 60_000;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    req.on("error", () => {});
    res.on("error", () => {});
    const url = parseRequestUrl(req.url ?? "/", baseUrl);
    const entry = requests.add(
      req.method ?? "GET",
      url?.pathname ?? req.url ?? "",
      url?.search.slice(1) ?? "",
      req.headers.authorization !== undefined,
      req.headers.range,
    );
    res.on("finish", () => requests.finished(entry, res.statusCode));
    res.on("close", () => requests.closed(entry));
    try {
      if (url === undefined) throw new ApiError(400, "invalid", `malformed request target "${req.url}"`);
      if (url.pathname.startsWith("/_emulator/")) {
        await admin(req, res, url);
        return;
      }
      const faults = state.faults;
      if (faultsApply(faults, url.pathname)) {
        if (faults.latencyMs > 0) await delay(faults.latencyMs);
        const d = decideFault(faults, random, false);
        if (d.kind === "status") {
          req.resume();
          const reason = d.status === 429 ? "rateLimitExceeded" : "backendError";
          const headers: Record<string, string> =
            d.retryAfterSeconds === undefined ? {} : { "retry-after": String(d.retryAfterSeconds) };
          sendJson(
            res,
            d.status,
            errorBody(
              d.status,
              reason,
              d.status === 429
                ? "The rate of requests is too high (injected fault)."
                : "Backend Error (injected fault).",
            ),
            headers,
          );
          return;
        }
      }
      const ctx: RequestContext = { baseUrl, faults, random };
      for (const service of services) {
        if (await service.handle(req, res, url, ctx)) return;
      }
      req.resume();
      sendError(
        res,
        new ApiError(501, "notImplemented", `hcexport emulator does not implement ${req.method} ${url.pathname}`),
      );
    } catch (err) {
      req.resume();
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof ApiError) {
        if (err.status === 304) {
          res.writeHead(304).end();
          return;
        }
        sendError(res, err);
      } else {
        sendError(
          res,
          new ApiError(500, "internalError", `emulator error: ${err instanceof Error ? err.message : String(err)}`),
        );
      }
    }
  }

  async function admin(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const p = url.pathname;
    if (p === "/_emulator/health") return sendJson(res, 200, { status: "ok" });
    if (p === "/_emulator/faults" && req.method === "GET") return sendJson(res, 200, state.faults);
    if (p === "/_emulator/faults" && req.method === "POST") {
      const { config, errors } = mergeFaults(state.faults, await readJson(req));
      if (errors.length > 0) throw new ApiError(400, "invalid", errors.join("; "));
      state.faults = config;
      if (config.seed !== undefined) random = seededRandom(config.seed);
      return sendJson(res, 200, state.faults);
    }
    if (p === "/_emulator/reset-faults" && req.method === "POST") {
      state.faults = { ...noFaults };
      return sendJson(res, 200, state.faults);
    }
    if (p === "/_emulator/requests" && req.method === "GET") {
      return sendJson(res, 200, requests.summary());
    }
    for (const service of services) {
      if (await service.handle(req, res, url, { baseUrl, faults: noFaults, random })) return;
    }
    throw new ApiError(404, "notFound", `no admin endpoint ${req.method} ${p}`);
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = options.host ?? "127.0.0.1";
  baseUrl = `${tls === undefined ? "http" : "https"}://${host.includes(":") ? `[${host}]` : host}:${port}`;
  const running: RunningEmulator = {
    baseUrl,
    port,
    store,
    projects,
    get faults() {
      return state.faults;
    },
    set faults(f: FaultConfig) {
      state.faults = f;
      if (f.seed !== undefined) random = seededRandom(f.seed);
    },
    requests,
    ...(tls === undefined ? {} : { tls: { caPem: tls.caPem, caPath: tls.caPath } }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  return running;
}

async function tlsMaterial(options: EmulatorOptions): Promise<TlsMaterial | undefined> {
  if (options.tls === undefined || options.tls === false) return undefined;
  if (options.tls !== true) return options.tls;
  const { loadOrCreateTls } = await import("./tls.ts");
  return loadOrCreateTls(options.dataDir === undefined ? undefined : path.join(options.dataDir, "tls"));
}

/**
 * The request target as a URL on our own origin. Origin-form targets are appended to the base
 * rather than resolved against it, so `//x/y` stays a path instead of becoming a host.
 */
function parseRequestUrl(target: string, baseUrl: string): URL | undefined {
  try {
    return new URL(target.startsWith("/") ? baseUrl + target : target);
  } catch {
    return undefined;
  }
}
