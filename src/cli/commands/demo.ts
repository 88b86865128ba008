import { readFile } from "node:fs/promises";
import path from "node:path";
import type { CommandModule } from "yargs";
import { HcexportError, PartialFailureError } from "../../core/errors.ts";
import { SIIM, SIIM_FHIR_STORE, SIIM_TEST_STORE, SIIM_TRAIN_STORE } from "../../emulator/dataset/siim.ts";
import { startLocalCloud } from "../../emulator/local-cloud.ts";
import { resolveEndpoints } from "../../gcp/endpoints.ts";
import { storageAdmin } from "../../gcp/storage-admin.ts";
import { HttpClient } from "../../net/http-client.ts";
import { trustCaPems } from "../../net/trust.ts";
import { runPipeline, type PipelineSpec } from "../../pipeline/pipeline.ts";
import { createContext, type CliIo, type GlobalArgs } from "../context.ts";
import { formatPipelineEvent, table } from "../format.ts";
import { pipelinePorts } from "../services.ts";

interface DemoArgs extends GlobalArgs {
  out: string;
  train: number;
  test: number;
  "instance-bytes": number;
  concurrency: number;
  tls: boolean;
}

/**
 * `hcexport demo`: the whole workflow on the embedded local cloud — bucket, IAM (missing at first,
 * granted because the demo says so), the train and test exports, the wait, the mirrors, the
 * annotations — then a byte-for-byte check of every file against the emulated stores.
 */
export const demoCommand = (io: CliIo): CommandModule<GlobalArgs, DemoArgs> => ({
  command: "demo",
  describe: "run the whole workflow against an embedded local cloud with a SIIM-shaped dataset",
  builder: (y) =>
    y
      .option("out", { type: "string", default: "demo-out", describe: "where the mirrored data goes" })
      .option("train", { type: "number", default: 200, describe: "train instances" })
      .option("test", { type: "number", default: 50, describe: "test instances" })
      .option("instance-bytes", { type: "number", default: 16384, describe: "approximate size of each DICOM file" })
      .option("concurrency", { type: "number", default: 32, describe: "parallel downloads" })
      .option("tls", {
        type: "boolean",
        default: false,
        describe: "serve the local cloud over HTTPS (a generated CA)",
      }) as never,
  handler: async (args) => {
    const { out } = createContext(args, io);
    out.use(formatPipelineEvent);
    const started = Date.now();
    const cloud = await startLocalCloud({
      dataset: { train: args.train, test: args.test, instanceBytes: args["instance-bytes"] },
      exportInstancesPerSecond: 2000,
      tls: args.tls,
    });
    if (cloud.tls !== undefined) trustCaPems([cloud.tls.caPem]);
    const client = new HttpClient({ signal: io.signal });
    try {
      out.line(
        `local cloud on ${cloud.baseUrl}: ${args.train} train + ${args.test} test instances, service agent ${SIIM.serviceAgent}`,
      );
      const endpoints = resolveEndpoints({ emulator: cloud.baseUrl });
      const dest = path.resolve(io.cwd, args.out);
      const spec: PipelineSpec = {
        bucket: {
          name: "hcexport-demo-bucket",
          project: "my-demo-project",
          location: "us-central1",
          storageClass: "STANDARD",
          uniformAccess: true,
        },
        serviceAgent: SIIM.serviceAgent,
        grantIam: true,
        exports: [
          { store: SIIM_TRAIN_STORE, prefix: "train", dest: path.join(dest, "train") },
          { store: SIIM_TEST_STORE, prefix: "test", dest: path.join(dest, "test") },
        ],
        annotations: {
          store: SIIM_FHIR_STORE,
          documentReference: SIIM.documentReference,
          dest: path.join(dest, "annotations"),
        },
        concurrency: args.concurrency,
      };
      const result = await runPipeline(
        spec,
        pipelinePorts(client, endpoints, storageAdmin(endpoints, "my-demo-project", undefined, io.signal), io.signal),
        {
          onEvent: out.emit,
          signal: io.signal,
          poll: { backoff: { initialMs: 100, maxMs: 1000, multiplier: 1.5, jitter: "equal" } },
        },
      );

      // Prove it: every instance of both stores is on disk, byte-identical.
      let verified = 0;
      for (const [store, sub] of [
        [SIIM_TRAIN_STORE, "train"],
        [SIIM_TEST_STORE, "test"],
      ] as const) {
        for (const inst of cloud.healthcare.instances(store)) {
          const file = path.join(dest, sub, inst.studyUid, inst.seriesUid, `${inst.sopInstanceUid}.dcm`);
          const bytes = await readFile(file).catch(() => undefined);
          if (bytes === undefined || !bytes.equals(inst.data()))
            throw new HcexportError(`demo check failed: ${file} is missing or differs from the store`);
          verified++;
        }
      }
      const rows = [
        ["step", "result"],
        ["bucket", result.bucketCreated ? "created gs://hcexport-demo-bucket" : "existed"],
        ["iam", result.iamGranted ? "granted roles/storage.objectAdmin" : "already granted"],
      ];
      for (const op of result.operations)
        rows.push(["export", `${op.store.split("/").pop()} → ${op.name.split("/").pop()}`]);
      for (const m of result.mirrors)
        rows.push([
          "mirror",
          `${m.prefix}: ${m.summary.downloaded} downloaded, ${m.summary.skipped} up to date, ${(m.summary.bytes / 1048576).toFixed(1)} MiB in ${(m.summary.durationMs / 1000).toFixed(2)} s`,
        ]);
      if (result.annotations)
        rows.push([
          "annotations",
          `${result.annotations.summary.images} images, ${result.annotations.summary.imagesWithPneumothorax} with pneumothorax, ${result.annotations.summary.masks} masks`,
        ]);
      rows.push(
        ["verified", `${verified} files byte-identical to the stores, in ${dest}`],
        ["time", `${((Date.now() - started) / 1000).toFixed(1)} s`],
      );
      out.result(table(rows), { ...result, verified, dest, seconds: (Date.now() - started) / 1000 });
      const bad = result.mirrors.reduce((n, m) => n + m.summary.failed + m.summary.refused, 0);
      if (bad > 0) throw new PartialFailureError(`${bad} objects failed or were refused`, bad);
    } finally {
      await client.close();
      await cloud.close();
    }
  },
});
