import path from "node:path";
import type { CommandModule } from "yargs";
import { Agent, request } from "undici";
import { loadConfig } from "../../config/load.ts";
import { ExitCode, HcexportError, HttpError, PermissionError, UsageError } from "../../core/errors.ts";
import { HttpClient, type AuthHeaders } from "../../net/http-client.ts";
import {
  doctorVerdict,
  runDoctor,
  type CheckResult,
  type DoctorEvent,
  type DoctorPorts,
  type DoctorSpec,
} from "../../workflow/doctor.ts";
import type { Config } from "../../config/schema.ts";
import { createContext, type CliIo, type GlobalArgs } from "../context.ts";
import type { AnyEvent, Rendered } from "../output.ts";
import { createServices, resolveServiceAgent, type Services } from "../services.ts";
import { configPositional } from "./run.ts";

interface DoctorArgs extends GlobalArgs {
  config: string;
  "grant-iam"?: boolean;
  timeout: number;
}

const SYMBOL: Record<CheckResult["status"], string> = { ok: "✔", warn: "!", fail: "✖", skip: "-" };

/**
 * `hcexport doctor [CONFIG]`: credentials, endpoints, your permissions on the bucket and the
 * stores, and the service agent's binding — read-only (GETs and testIamPermissions only). Exit 0
 * when nothing failed; 3 when only permissions are missing; 2 for a config problem; 1 otherwise.
 */
export const doctorCommand = (io: CliIo): CommandModule<GlobalArgs, DoctorArgs> => ({
  command: "doctor [config]",
  describe: "check credentials, endpoints, permissions and the service agent binding; changes nothing",
  builder: (y) =>
    configPositional(y)
      .option("grant-iam", {
        type: "boolean",
        describe: "judge as `run --grant-iam` would (a missing binding is then only a warning)",
      })
      .option("timeout", { type: "number", default: 10, describe: "seconds each check may take" }) as never,
  handler: async (args) => {
    const { out } = createContext(args, io);
    out.use(formatDoctorEvent);
    if (!(args.timeout > 0))
      throw new UsageError(`--timeout must be a positive number of seconds, not ${args.timeout}`);
    const loaded = await loadConfig(path.resolve(io.cwd, args.config), {
      project: args.project,
      grantIam: args["grant-iam"],
    });
    const config = loaded.config;
    // Doctor reports credentials as one of its checks instead of stopping at them.
    const services = await createServices(args, io, config, { credentials: false });
    const probes = new Agent({ connections: 4, headersTimeout: args.timeout * 1000, bodyTimeout: args.timeout * 1000 });
    // Short retries: every check has its own deadline, and doctor should answer quickly.
    const client = new HttpClient({
      auth: services.client.auth,
      connections: 8,
      timeoutMs: args.timeout * 1000,
      signal: io.signal,
      retry: { retries: 2, backoff: { initialMs: 250, maxMs: 2000, multiplier: 2, jitter: "equal" } },
    });
    try {
      const spec: DoctorSpec = {
        endpoints: services.endpoints,
        project: config.project,
        bucket: config.bucket.name,
        grantIam: config.grantIam,
        serviceAgentConfigured: config.serviceAgent !== undefined,
        dicomStores: config.exports.map((e) => e.store),
        fhirStore: config.annotations?.store,
      };
      const results = await runDoctor(spec, doctorPorts(services, client, probes, config), {
        timeoutMs: args.timeout * 1000,
        onEvent: out.emit,
      });
      const verdict = doctorVerdict(results);
      out.result(renderResults(results, verdict.summary), {
        ok: verdict.ok,
        exitCode: verdict.exitCode,
        summary: verdict.summary,
        config: loaded.file,
        endpoints: services.endpoints,
        checks: results,
      });
      if (!verdict.ok) throw verdictError(verdict.summary, verdict.exitCode, verdict.failed);
    } finally {
      await client.close();
      await probes.close();
      await services.close();
    }
  },
});

/** The real adapters: read-only calls against Google or the local cloud. */
function doctorPorts(services: Services, client: HttpClient, probes: Agent, config: Config): DoctorPorts {
  const { storage, healthcare } = services.endpoints;
  const bucketUrl = (b: string) => `${storage}/storage/v1/b/${encodeURIComponent(b)}`;
  return {
    async credentials() {
      const auth = services.client.auth as AuthHeaders & {
        kind?: () => Promise<string>;
        resolve?: () => Promise<void>;
      };
      // Resolving mints (or refreshes) a token, exactly as every other command does up front; it is never shown.
      await auth.resolve?.();
      const kind = auth.kind === undefined ? auth.description : await auth.kind();
      return { kind };
    },
    async probe(url, signal) {
      const res = await request(url, {
        method: "GET",
        dispatcher: probes,
        signal,
        headers: { "user-agent": "hcexport/0.1 doctor" },
      });
      await res.body.dump();
      return { status: res.statusCode };
    },
    async getBucket(b, signal) {
      try {
        return await client.json<{ location?: string }>("GET", bucketUrl(b), {
          signal,
          query: { fields: "name,location" },
        });
      } catch (err) {
        if (err instanceof HttpError && err.status === 404) return undefined;
        throw err;
      }
    },
    async testBucketPermissions(b, permissions, signal) {
      const r = await client.json<{ permissions?: string[] }>("GET", `${bucketUrl(b)}/iam/testPermissions`, {
        signal,
        query: { permissions },
      });
      return r?.permissions ?? [];
    },
    async testStorePermissions(store, permissions, signal) {
      const r = await client.json<{ permissions?: string[] }>("POST", `${healthcare}/v1/${store}:testIamPermissions`, {
        signal,
        body: { permissions },
      });
      return r?.permissions ?? [];
    },
    getBucketPolicy: (b) => services.ports.buckets.getPolicy(b),
    serviceAgent: () => resolveServiceAgent(config, services),
  };
}

/** A check as it finishes: the transient status line (the table comes at the end). */
function formatDoctorEvent(event: AnyEvent): Rendered | undefined {
  if (event.kind !== "doctor.check") return undefined;
  const e = event as DoctorEvent;
  return { status: `doctor: ${e.name}: ${e.status}`, level: "debug" };
}

/** One line per check, its fix below it, and the summary. */
export function renderResults(results: readonly CheckResult[], summary: string): string {
  const width = Math.max(...results.map((r) => r.name.length));
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`${SYMBOL[r.status]} ${r.status.padEnd(4)}  ${r.name.padEnd(width)}  ${r.detail}`);
    if (r.hint !== undefined && (r.status === "fail" || r.status === "warn"))
      lines.push(`${" ".repeat(width + 10)}fix: ${r.hint}`);
  }
  lines.push("", summary);
  return lines.join("\n");
}

function verdictError(summary: string, exitCode: ExitCode, failed: readonly CheckResult[]): HcexportError {
  const first = failed.find((r) => r.hint !== undefined);
  const options = first?.hint === undefined ? {} : { hint: first.hint };
  // The first failure's detail names what is wrong (e.g. member and role) even where only stderr is read.
  const message = `doctor: ${summary}${failed[0] === undefined ? "" : `\n  ${failed[0].name}: ${failed[0].detail}`}`;
  if (exitCode === ExitCode.Permission) return new PermissionError(message, options);
  if (exitCode === ExitCode.Usage) return new UsageError(message, options);
  return new HcexportError(message, exitCode, options);
}
