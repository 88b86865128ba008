import type { CommandModule } from "yargs";
import { UsageError } from "../../core/errors.ts";
import { SIIM, SIIM_TEST_STORE, SIIM_TRAIN_STORE } from "../../emulator/dataset/siim.ts";
import { startLocalCloud } from "../../emulator/local-cloud.ts";
import { parseLoadSpec, type LoadSpec } from "../../emulator/healthcare/load-local.ts";
import { statSync } from "node:fs";
import type { FaultConfig } from "../../emulator/types.ts";
import type { CliIo, GlobalArgs } from "../context.ts";

interface EmulatorArgs extends GlobalArgs {
  port: number;
  host: string;
  data?: string;
  dataset?: string;
  train: number;
  test: number;
  seed: number;
  "instance-bytes": number;
  "export-rate": number;
  stored: boolean;
  "fault-429": number;
  "fault-503": number;
  "fault-reset": number;
  "fault-truncate": number;
  "fault-corrupt": number;
  "fault-latency": number;
  "fault-export-failure": number;
  "retry-after"?: number;
  tls: boolean;
  load?: string[];
}

function plainHints(url: string): string[] {
  return [
    `hcexport:            hcexport --emulator ${url} …   (or HCEXPORT_EMULATOR=${url})`,
    `@google-cloud/storage: new Storage({ apiEndpoint: "${url}", projectId: "my-project" })`,
    `rclone:              rclone lsf :gcs:BUCKET --gcs-anonymous --gcs-endpoint ${url}/storage/v1/`,
    `gcloud:              CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE=${url}/ CLOUDSDK_AUTH_DISABLE_CREDENTIALS=True gcloud storage ls gs://BUCKET`,
  ];
}

function tlsHints(url: string, ca: string): string[] {
  return [
    `hcexport:            hcexport --emulator ${url} --ca-cert ${ca} …   (or NODE_EXTRA_CA_CERTS=${ca})`,
    `@google-cloud/storage: NODE_EXTRA_CA_CERTS=${ca} node …  with new Storage({ apiEndpoint: "${url}" })`,
    `rclone:              rclone lsf :gcs:BUCKET --ca-cert ${ca} --gcs-anonymous --gcs-endpoint ${url}/storage/v1/`,
    `gcloud:              CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE=${ca} CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE=${url}/ CLOUDSDK_AUTH_DISABLE_CREDENTIALS=True gcloud storage ls gs://BUCKET`,
  ];
}

/** `hcexport emulator`: the local cloud in the foreground until SIGINT/SIGTERM. */
export const emulatorCommand = (io: CliIo): CommandModule<GlobalArgs, EmulatorArgs> => ({
  command: "emulator",
  describe: "start the local cloud (GCS JSON API, Healthcare API, Resource Manager) on loopback",
  builder: (y) =>
    y
      .option("port", { type: "number", default: 0, describe: "port (0 picks a free one)" })
      .option("host", { type: "string", default: "127.0.0.1", describe: "address to listen on (keep it loopback)" })
      .option("tls", {
        type: "boolean",
        default: false,
        describe: "serve HTTPS on the port, with a generated CA (its file is printed; kept under --data)",
      })
      .option("data", {
        type: "string",
        describe: "keep buckets and objects in this directory so they survive a restart",
      })
      .option("dataset", {
        type: "string",
        choices: ["siim"],
        describe: "load the SIIM-shaped dataset (stores, FHIR annotations)",
      })
      .option("load", {
        type: "string",
        array: true,
        describe:
          "preload a DICOM store from your own files: STORE=DIR (STORE = projects/P/locations/L/datasets/D/dicomStores/S; DIR walked recursively; repeatable)",
      })
      .option("train", { type: "number", default: 200, describe: "train instances (the real store has 10,712)" })
      .option("test", { type: "number", default: 50, describe: "test instances (the real store has 1,377)" })
      .option("seed", { type: "number", default: 1, describe: "dataset seed (same seed, same bytes)" })
      .option("instance-bytes", {
        type: "number",
        default: 8192,
        describe: "approximate size of each DICOM file (real: ~150000)",
      })
      .option("stored", {
        type: "boolean",
        default: false,
        describe:
          "render each dataset instance once at start and serve those bytes, as a real store does (memory: instances × --instance-bytes)",
      })
      .option("export-rate", {
        type: "number",
        default: 100,
        describe: "instances an export writes per second (100: about a second per 100 instances)",
      })
      .option("fault-429", { type: "number", default: 0, describe: "fraction of requests answered 429" })
      .option("fault-503", { type: "number", default: 0, describe: "fraction of requests answered 503" })
      .option("retry-after", { type: "number", describe: "seconds sent in Retry-After with injected 429/503" })
      .option("fault-reset", {
        type: "number",
        default: 0,
        describe: "fraction of media bodies cut by a connection reset",
      })
      .option("fault-truncate", { type: "number", default: 0, describe: "fraction of media bodies ended early" })
      .option("fault-corrupt", {
        type: "number",
        default: 0,
        describe: "fraction of media bodies with flipped bytes (true hash headers)",
      })
      .option("fault-latency", { type: "number", default: 0, describe: "added latency per request, ms" })
      .option("fault-export-failure", {
        type: "number",
        default: 0,
        describe: "fraction of instances an export fails to write",
      }) as never,
  handler: async (args) => {
    for (const k of [
      "fault-429",
      "fault-503",
      "fault-reset",
      "fault-truncate",
      "fault-corrupt",
      "fault-export-failure",
    ] as const) {
      if (!(args[k] >= 0 && args[k] <= 1)) throw new UsageError(`--${k} must be a fraction from 0 to 1`);
    }
    const faults: Partial<FaultConfig> = {
      rate429: args["fault-429"],
      rate503: args["fault-503"],
      resetRate: args["fault-reset"],
      truncateRate: args["fault-truncate"],
      corruptRate: args["fault-corrupt"],
      latencyMs: args["fault-latency"],
      exportFailureRate: args["fault-export-failure"],
      ...(args["retry-after"] === undefined ? {} : { retryAfterSeconds: args["retry-after"] }),
    };
    const load: LoadSpec[] = [];
    for (const raw of args.load ?? []) {
      const spec = parseLoadSpec(raw);
      if (typeof spec === "string") throw new UsageError(spec);
      let isDir = false;
      try {
        isDir = statSync(spec.dir).isDirectory();
      } catch {
        // reported below
      }
      if (!isDir) throw new UsageError(`--load ${raw}: ${spec.dir} is not a directory`);
      load.push(spec);
    }
    const cloud = await startLocalCloud({
      load,
      port: args.port,
      host: args.host,
      faults,
      exportInstancesPerSecond: args["export-rate"],
      tls: args.tls,
      ...(args.data === undefined ? {} : { dataDir: args.data }),
      ...(args.dataset === "siim"
        ? {
            dataset: {
              train: args.train,
              test: args.test,
              seed: args.seed,
              instanceBytes: args["instance-bytes"],
              stored: args.stored,
            },
          }
        : {}),
    });
    io.stdout.write(`listening on ${cloud.baseUrl}\n`);
    const ca = cloud.tls?.caPath;
    if (ca !== undefined) io.stdout.write(`ca certificate ${ca}\n`);
    if (!args.quiet) {
      const lines = ca === undefined ? plainHints(cloud.baseUrl) : tlsHints(cloud.baseUrl, ca);
      lines.push(
        `gcloud healthcare:   CLOUDSDK_API_ENDPOINT_OVERRIDES_HEALTHCARE=${cloud.baseUrl}/ CLOUDSDK_AUTH_DISABLE_CREDENTIALS=True${ca === undefined ? "" : ` CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE=${ca}`} gcloud healthcare datasets list --location=us-central1 --project=P`,
        `faults:              curl${ca === undefined ? "" : ` --cacert ${ca}`} -X POST ${cloud.baseUrl}/_emulator/faults -d '{"rate503":0.05}'`,
      );
      if (args.dataset === "siim") {
        lines.push(
          `dataset:             ${args.train} train + ${args.test} test instances`,
          `  ${SIIM_TRAIN_STORE}`,
          `  ${SIIM_TEST_STORE}`,
          `  service agent that needs roles/storage.objectAdmin on your bucket: ${SIIM.serviceAgent}`,
        );
      }
      for (const l of cloud.loaded) {
        lines.push(
          `loaded:              ${l.loaded} instances (${l.bytes} bytes) from ${l.dir} into`,
          `  ${l.store}`,
          `  service agent that needs roles/storage.objectAdmin on your bucket: ${l.serviceAgent}`,
        );
        if (l.skipped.length > 0)
          lines.push(
            `  skipped ${l.skipped.length} files that are not DICOM, e.g. ${l.skipped[0]!.file}: ${l.skipped[0]!.reason}`,
          );
      }
      io.stderr.write(`${lines.join("\n")}\n`);
    }
    await new Promise<void>((resolve) => {
      if (io.signal.aborted) resolve();
      else io.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    await cloud.close();
  },
});
