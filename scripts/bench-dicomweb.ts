/**
 * `npm run bench:dicomweb`: the seed's two ways to get a DICOM store onto disk, on the same
 * dataset of the local cloud, side by side in one run:
 *
 *   - `hcexport dicomweb pull` (QIDO-RS + WADO-RS), per instance and per study (multipart);
 *   - `hcexport run` (export to a bucket, then mirror), with the emulated export as fast as it
 *     goes so that the figure is the tool's own work, not an invented export duration.
 *
 * The local cloud runs as its own process (`hcexport emulator --stored`). Each row has hcexport's peak RSS.
 * Writes bench-out/dicomweb.{md,json}.
 *
 *   npm run bench:dicomweb                       # 10,000 × 150 KB (issue #11: pull of 10,000 ≤ 150 MiB)
 *   npm run bench:dicomweb -- --instances 1000   # quicker
 */
import { spawn } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { measure, processCpuSeconds, settleDisk } from "./bench-lib.ts";

const { values } = parseArgs({
  options: {
    instances: { type: "string", default: "10000" },
    size: { type: "string", default: "150000" },
    concurrency: { type: "string", default: "16" },
    out: { type: "string", default: "bench-out" },
  },
});
const N = Number(values.instances);
const C = values.concurrency;
const work = path.resolve(values.out, "dicomweb");
const cli = path.resolve("dist/cli/main.js");
// The runs measured go through the installed command (bin/hcexport.js), as a user starts them: its
// compile cache and, for these long commands, the one-arena restart. The local cloud runs dist directly.
const launcher = path.resolve("bin/hcexport.js");
const STORE =
  "projects/kaggle-siim-healthcare/locations/us-central1/datasets/siim-pneumothorax/dicomStores/dicom-images-train";

/** The local cloud's pid, for its CPU time over each run. */
let cloudPid: number | undefined;

/**
 * Wall seconds and peak RSS (MiB, when /usr/bin/time is there) of one hcexport run, after an
 * untimed `sync` (no run waits on the writeback of the one before: the mirror alone follows `run`'s
 * 1.4 GB), and the local cloud's CPU seconds over it.
 */
async function timed(args: string[]): Promise<{ seconds: number; rssMiB?: number; cloudCpu?: number }> {
  settleDisk();
  const before = processCpuSeconds(cloudPid);
  const m = await measure(process.execPath, [launcher, ...args]);
  const after = processCpuSeconds(cloudPid);
  return { ...m, ...(before === undefined || after === undefined ? {} : { cloudCpu: after - before }) };
}

async function main(): Promise<void> {
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const emulator = spawn(
    process.execPath,
    [
      cli,
      "emulator",
      "--dataset",
      "siim",
      "--train",
      String(N),
      "--test",
      "0",
      "--instance-bytes",
      values.size,
      "--export-rate",
      "1000000",
      // Instances served from stored bytes, as the bucket serves the export's objects: the pull
      // and the mirror are then set against the same server work (rendering and hashing each
      // instance per request cost the local cloud 1.7 s of the 2 cores per 10,000 × 150 KB).
      "--stored",
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  cloudPid = emulator.pid;
  let out = "";
  emulator.stdout!.setEncoding("utf8");
  const url = await new Promise<string>((resolve, reject) => {
    emulator.stdout!.on("data", (d: string) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    emulator.once("exit", (code) => reject(new Error(`emulator exited ${code}`)));
  });
  try {
    const rows: Array<[string, number, number | undefined, string, number | undefined]> = [];
    const add = (what: string, m: { seconds: number; rssMiB?: number; cloudCpu?: number }, note = "") => {
      rows.push([what, m.seconds, m.rssMiB, note, m.cloudCpu]);
      process.stderr.write(
        `${what}: ${m.seconds.toFixed(2)} s (${(N / m.seconds).toFixed(0)} instances/s), peak RSS ${m.rssMiB?.toFixed(0) ?? "?"} MiB\n`,
      );
    };
    add(
      `dicomweb pull, per instance (c=${C})`,
      await timed([
        "--emulator",
        url,
        "--quiet",
        "dicomweb",
        "pull",
        STORE,
        path.join(work, "pull-instance"),
        "--concurrency",
        C,
        "--page-size",
        "5000",
      ]),
    );
    add(
      `dicomweb pull, per study (multipart, c=${C})`,
      await timed([
        "--emulator",
        url,
        "--quiet",
        "dicomweb",
        "pull",
        STORE,
        path.join(work, "pull-study"),
        "--concurrency",
        C,
        "--page-size",
        "5000",
        "--mode",
        "study",
      ]),
    );
    add(
      "dicomweb pull, rerun with nothing to do",
      await timed([
        "--emulator",
        url,
        "--quiet",
        "dicomweb",
        "pull",
        STORE,
        path.join(work, "pull-instance"),
        "--concurrency",
        C,
        "--page-size",
        "5000",
      ]),
    );
    const config = {
      project: "bench-project",
      bucket: { name: "hcexport-bench-dicomweb" },
      grantIam: true,
      exports: [{ store: STORE, prefix: "train", dest: path.join(work, "run-train") }],
      mirror: { concurrency: 32 },
      stateDir: path.join(work, "run-state"),
    };
    const configFile = path.join(work, "run.json");
    await writeFile(configFile, JSON.stringify(config));
    const reportFile = path.join(work, "run-report.json");
    const total = await timed(["--emulator", url, "--quiet", "run", configFile, "--report", reportFile]);
    const report = JSON.parse(await readFile(reportFile, "utf8")) as {
      mirrors?: Array<{ durationMs: number; downloaded: number }>;
    };
    const mirrorSecs = (report.mirrors?.[0]?.durationMs ?? NaN) / 1000;
    add(
      "run: bucket + IAM + export + mirror (c=32)",
      total,
      `export emulated at max speed; its mirror step ${mirrorSecs.toFixed(2)} s (it follows the export as it is written)`,
    );
    // The same objects mirrored again, alone, into an empty directory: the mirror's own rate on
    // this data, which is what the pull's per-instance rate is set against (issue #11: ≥ 0.8×).
    add(
      "mirror of the exported prefix alone, cold (c=32)",
      await timed([
        "--emulator",
        url,
        "--quiet",
        "mirror",
        `gs://${config.bucket.name}/train`,
        path.join(work, "mirror-train"),
        "--concurrency",
        "32",
      ]),
    );
    // Rates in instances/s: the mirror's seconds over the pull's.
    const pullRatio = rows.at(-1)![1] / rows[0]![1];
    const md = [
      `# dicomweb pull vs export + mirror`,
      "",
      `${N} instances × ${values.size} bytes on the local cloud (its own process). Machine: ${os.cpus().length} cores, ${os.cpus()[0]?.model ?? "?"}. Node ${process.version}. Date: ${new Date().toISOString()}.`,
      "",
      "| path | seconds | instances/s | peak RSS | local cloud CPU | note |",
      "|---|---|---|---|---|---|",
      ...rows.map(
        ([what, secs, rss, note, cloud]) =>
          `| ${what} | ${secs.toFixed(2)} | ${(N / secs).toFixed(0)} | ${rss === undefined ? "?" : `${rss.toFixed(0)} MiB`} | ${cloud === undefined ? "?" : `${cloud.toFixed(1)} s`} | ${note} |`,
      ),
      "",
      `Pull per instance against the mirror alone on the same objects: ${pullRatio.toFixed(2)}× its instances/s (target ≥ 0.8×).`,
      "",
    ].join("\n");
    await writeFile(path.resolve(values.out, "dicomweb.md"), md);
    await writeFile(
      path.resolve(values.out, "dicomweb.json"),
      JSON.stringify({ instances: N, size: Number(values.size), rows, pullRatio }, null, 2),
    );
    process.stdout.write(md);
  } finally {
    emulator.kill("SIGTERM");
  }
}

await main();
