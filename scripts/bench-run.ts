/**
 * `npm run bench:run`: `hcexport run` end to end against the local cloud (its own process), with
 * the mirror following the export (default) and with `--no-follow`, on one dataset at a paced
 * export rate. Reports, per mode: the export operations' duration (createTime → endTime, from the
 * emulator), when the first instance landed on disk after the first export started, and how long
 * after the last operation ended `run` exited. Writes bench-out/run.{md,json}.
 *
 *   npm run bench:run                                   # 3,000 + 300 × 150 KB at 100/s
 *   npm run bench:run -- --train 600 --test 60          # quicker
 */
import { spawn } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    train: { type: "string", default: "3000" },
    test: { type: "string", default: "300" },
    size: { type: "string", default: "150000" },
    rate: { type: "string", default: "100" },
    out: { type: "string", default: "bench-out" },
  },
});
const cli = path.resolve("dist/cli/main.js");
const work = path.resolve(values.out, "run");
const DATASET = "projects/kaggle-siim-healthcare/locations/us-central1/datasets/siim-pneumothorax";

interface Figures {
  mode: string;
  exportSeconds: number;
  firstFileAfterExportStartSeconds: number;
  runEndAfterExportEndSeconds: number;
  /** When the last wait step saw its operation done, after that operation's endTime. */
  endNoticedAfterSeconds: number;
  runSeconds: number;
  files: number;
}

async function runOnce(url: string, mode: "follow" | "no-follow"): Promise<Figures> {
  const dir = path.join(work, mode);
  const config = path.join(dir, "config.json");
  await mkdir(dir, { recursive: true });
  await writeFile(
    config,
    JSON.stringify({
      project: "bench-project",
      bucket: { name: `bench-run-${mode}`, location: "us-central1" },
      grantIam: true,
      exports: [
        { store: `${DATASET}/dicomStores/dicom-images-train`, prefix: "train", dest: "./out/train" },
        { store: `${DATASET}/dicomStores/dicom-images-test`, prefix: "test", dest: "./out/test" },
      ],
      stateDir: "./out/.hcexport",
    }),
  );
  const args = [cli, "run", config, "--emulator", url, "--json", ...(mode === "no-follow" ? ["--no-follow"] : [])];
  const started = Date.now();
  let firstFile: number | undefined;
  let files = 0;
  const ops = new Set<string>();
  const waitDone = new Map<string, number>();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
    let buf = "";
    child.stdout.on("data", (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const e = JSON.parse(line) as { kind: string; action?: string; time?: string; step?: string; detail?: string };
        if (e.kind === "mirror.file" && e.action === "downloaded") {
          files++;
          firstFile ??= Date.parse(e.time!);
        }
        if (e.kind === "step.done" && e.step === "export" && e.detail !== undefined) ops.add(e.detail);
        if (e.kind === "step.done" && e.step === "wait")
          waitDone.set((e as { lane?: string }).lane ?? "", Date.parse(e.time!));
      }
    });
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`run (${mode}) exited ${code}`))));
  });
  const ended = Date.now();
  const times = await Promise.all(
    [...ops].map(async (name) => {
      const op = (await (await fetch(`${url}/v1/${name}`)).json()) as {
        metadata: { createTime: string; endTime: string };
      };
      return { start: Date.parse(op.metadata.createTime), end: Date.parse(op.metadata.endTime) };
    }),
  );
  const exportStart = Math.min(...times.map((t) => t.start));
  const exportEnd = Math.max(...times.map((t) => t.end));
  return {
    mode,
    exportSeconds: (exportEnd - exportStart) / 1000,
    firstFileAfterExportStartSeconds: ((firstFile ?? NaN) - exportStart) / 1000,
    runEndAfterExportEndSeconds: (ended - exportEnd) / 1000,
    endNoticedAfterSeconds: (Math.max(...waitDone.values()) - exportEnd) / 1000,
    runSeconds: (ended - started) / 1000,
    files,
  };
}

async function main(): Promise<void> {
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const emulator = spawn(
    process.execPath,
    [cli, "emulator", "--dataset", "siim", "--train", values.train, "--test", values.test].concat([
      "--instance-bytes",
      values.size,
      "--export-rate",
      values.rate,
      "--quiet",
    ]),
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  try {
    const url = await new Promise<string>((resolve) => {
      let out = "";
      emulator.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        const m = /listening on (\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
    });
    const rows: Figures[] = [];
    for (const mode of ["follow", "no-follow"] as const) rows.push(await runOnce(url, mode));
    const md = [
      `# hcexport run: follow vs --no-follow (${values.train} + ${values.test} instances × ${values.size} B, export rate ${values.rate}/s)`,
      "",
      "| mode | export (s) | first file after export start (s) | end noticed after export end (s) | run end after export end (s) | run total (s) | files |",
      "|---|---|---|---|---|---|---|",
      ...rows.map(
        (r) =>
          `| ${r.mode} | ${r.exportSeconds.toFixed(1)} | ${r.firstFileAfterExportStartSeconds.toFixed(1)} | ${r.endNoticedAfterSeconds.toFixed(1)} | ${r.runEndAfterExportEndSeconds.toFixed(1)} | ${r.runSeconds.toFixed(1)} | ${r.files} |`,
      ),
      "",
    ].join("\n");
    await writeFile(path.join(values.out, "run.md"), md);
    await writeFile(path.join(values.out, "run.json"), `${JSON.stringify(rows, null, 2)}\n`);
    process.stdout.write(md);
  } finally {
    emulator.kill("SIGTERM");
  }
}

await main();
