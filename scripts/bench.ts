/**
 * `npm run bench`: hcexport's mirror vs rclone vs `gcloud storage rsync` on the local cloud, side
 * by side in one run, plus the local cloud's raw serving rate (the ceiling) and hcexport's peak
 * RSS for a listing of many objects. Writes bench-out/results.{md,json} and prints the table.
 *
 *   npm run bench                      # 10,000 × 150 KB, 3 × 100 MB, RSS at 10k and 1M objects
 *   npm run bench -- --objects 2000 --big 0 --rss-objects 100000 --no-gcloud   # a quicker run
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs, promisify } from "node:util";
import { request } from "undici";
import { measureServeRate } from "./serve-rate.ts";

const exec = promisify(execFile);
const { values } = parseArgs({
  options: {
    objects: { type: "string", default: "10000" },
    size: { type: "string", default: "150000" },
    concurrency: { type: "string", default: "32" },
    big: { type: "string", default: "3" },
    "big-size": { type: "string", default: String(100 * 1024 * 1024) },
    "rss-objects": { type: "string", default: "1000000" },
    gcloud: { type: "boolean", default: true },
    rclone: { type: "boolean", default: true },
    out: { type: "string", default: "bench-out" },
  },
  allowNegative: true,
});

const C = Number(values.concurrency);
const work = path.resolve(values.out);
const cli = path.resolve("dist/cli/main.js");
const has = (bin: string) => (process.env["PATH"] ?? "").split(":").some((d) => existsSync(path.join(d, bin)));
const useRclone = values.rclone && has("rclone");
const useGcloud = values.gcloud && has("gcloud");

interface Server {
  url: string;
  child: ChildProcess;
}

async function startServer(args: string[]): Promise<Server> {
  const child = spawn(process.execPath, ["scripts/bench-server.ts", ...args], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout!.setEncoding("utf8");
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on("data", (d: string) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once("exit", (code) => reject(new Error(`bench server exited ${code}`)));
  });
  return { url, child };
}

async function stopServer(s: Server): Promise<void> {
  s.child.kill("SIGTERM");
  await new Promise((r) => s.child.once("exit", r));
}

async function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const t = performance.now();
  await exec(cmd, args, { env, maxBuffer: 256 * 1024 * 1024, timeout: 3_600_000 });
  return (performance.now() - t) / 1000;
}

const tools = {
  hcexport: (url: string, prefix: string, dir: string) =>
    timed(process.execPath, [
      cli,
      "mirror",
      `gs://bench-bucket/${prefix}`,
      dir,
      "--emulator",
      url,
      "--concurrency",
      String(C),
      "--quiet",
    ]),
  rclone: (url: string, prefix: string, dir: string) =>
    timed("rclone", [
      "copy",
      `:gcs:bench-bucket/${prefix}`,
      dir,
      "--gcs-anonymous",
      "--gcs-endpoint",
      `${url}/storage/v1/`,
      "--transfers",
      String(C),
      "--checkers",
      String(C),
      "--config",
      "/dev/null",
    ]),
  gcloud: (url: string, prefix: string, dir: string) =>
    timed("gcloud", ["storage", "rsync", "-r", `gs://bench-bucket/${prefix}`, dir], {
      ...process.env,
      CLOUDSDK_CONFIG: path.join(work, "gcloud-config"),
      CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE: `${url}/`,
      CLOUDSDK_AUTH_DISABLE_CREDENTIALS: "True",
      CLOUDSDK_CORE_DISABLE_PROMPTS: "1",
      CLOUDSDK_CORE_PROJECT: "bench",
    }),
};
type Tool = keyof typeof tools;

/** Rewrites `fraction` of the objects under a prefix with new bytes, through the real upload API. */
async function changeSome(url: string, prefix: string, fraction: number): Promise<number> {
  const names: string[] = [];
  let token: string | undefined;
  do {
    const r = await request(
      `${url}/storage/v1/b/bench-bucket/o?prefix=${prefix}/&fields=nextPageToken,items(name)${token ? `&pageToken=${token}` : ""}`,
    );
    const page = (await r.body.json()) as { items?: Array<{ name: string }>; nextPageToken?: string };
    names.push(...(page.items ?? []).map((i) => i.name));
    token = page.nextPageToken;
  } while (token);
  const step = Math.max(1, Math.round(1 / fraction));
  let changed = 0;
  for (let i = 0; i < names.length; i += step) {
    const r = await request(
      `${url}/upload/storage/v1/b/bench-bucket/o?uploadType=media&name=${encodeURIComponent(names[i]!)}`,
      {
        method: "POST",
        body: Buffer.alloc(Number(values.size), i & 0xff),
        headers: { "content-type": "application/dicom" },
      },
    );
    await r.body.dump();
    changed++;
  }
  return changed;
}

async function peakRss(args: string[]): Promise<number | undefined> {
  if (!existsSync("/usr/bin/time")) return undefined;
  const { stderr } = await exec("/usr/bin/time", ["-f", "MAXRSS_KB=%M", process.execPath, ...args], {
    maxBuffer: 512 * 1024 * 1024,
    timeout: 3_600_000,
  });
  const m = /MAXRSS_KB=(\d+)/.exec(stderr);
  return m ? Number(m[1]) / 1024 : undefined;
}

async function main(): Promise<void> {
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const selected: Tool[] = [
    "hcexport",
    ...(useRclone ? (["rclone"] as const) : []),
    ...(useGcloud ? (["gcloud"] as const) : []),
  ];
  const n = Number(values.objects);
  const sizeKB = Math.round(Number(values.size) / 1000);
  const results: Record<string, unknown> = {
    machine: `${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.cpus()[0]?.model ?? "?"}, node ${process.version}`,
    date: new Date().toISOString(),
    objects: n,
    objectBytes: Number(values.size),
    concurrency: C,
  };
  const rows: string[][] = [["scenario", ...selected, "ceiling (raw client)"]];

  // Small objects: ceiling, cold copy, no-op, 1 % changed.
  let server = await startServer(["--objects", String(n), "--size", values.size, "--prefix", "train"]);
  try {
    const ceiling = await measureServeRate(server.url, "bench-bucket", "train", C);
    results["ceiling"] = ceiling;
    const cold: Record<string, number> = {};
    const noop: Record<string, number> = {};
    for (const t of selected) {
      cold[t] = await tools[t](server.url, "train", path.join(work, t));
      noop[t] = await tools[t](server.url, "train", path.join(work, t));
      process.stderr.write(`${t}: cold ${cold[t]!.toFixed(2)} s, no-op ${noop[t]!.toFixed(2)} s\n`);
    }
    const changedCount = await changeSome(server.url, "train", 0.01);
    const changed: Record<string, number> = {};
    for (const t of selected) changed[t] = await tools[t](server.url, "train", path.join(work, t));
    results["small"] = { cold, noop, changed, changedCount };
    const rate = (s: number) => `${s.toFixed(2)} s (${Math.round(n / s)} obj/s)`;
    rows.push([`cold copy, ${n} × ${sizeKB} KB`, ...selected.map((t) => rate(cold[t]!)), rate(ceiling.seconds)]);
    rows.push([`no-op re-sync`, ...selected.map((t) => `${noop[t]!.toFixed(2)} s`), "–"]);
    rows.push([`re-sync, ${changedCount} changed (1 %)`, ...selected.map((t) => `${changed[t]!.toFixed(2)} s`), "–"]);
  } finally {
    await stopServer(server);
  }

  // A few large objects.
  const big = Number(values.big);
  if (big > 0) {
    server = await startServer(["--objects", String(big), "--size", values["big-size"], "--prefix", "big"]);
    try {
      const bigTools = selected.filter((t) => t !== "gcloud" || big * Number(values["big-size"]) <= 2 ** 30);
      const times: Record<string, number> = {};
      for (const t of bigTools) times[t] = await tools[t](server.url, "big", path.join(work, `${t}-big`));
      const ceiling = await measureServeRate(server.url, "bench-bucket", "big", Math.min(C, big));
      const mb = (big * Number(values["big-size"])) / 2 ** 20;
      results["big"] = { objects: big, bytes: Number(values["big-size"]), times, ceiling };
      rows.push([
        `cold copy, ${big} × ${Math.round(Number(values["big-size"]) / 2 ** 20)} MiB`,
        ...selected.map((t) =>
          times[t] === undefined ? "–" : `${times[t]!.toFixed(2)} s (${Math.round(mb / times[t]!)} MiB/s)`,
        ),
        `${ceiling.seconds.toFixed(2)} s (${Math.round(ceiling.mibPerSecond)} MiB/s)`,
      ]);
    } finally {
      await stopServer(server);
    }
  }

  // Peak RSS of a listing-only run (dry run) at two object counts.
  const rss: Record<string, number | undefined> = {};
  for (const count of [10_000, Number(values["rss-objects"])]) {
    server = await startServer(["--objects", String(count), "--size", "16", "--prefix", "many"]);
    try {
      rss[count] = await peakRss([
        cli,
        "mirror",
        "gs://bench-bucket/many",
        path.join(work, `rss-${count}`),
        "--emulator",
        server.url,
        "--dry-run",
        "--quiet",
      ]);
    } finally {
      await stopServer(server);
    }
  }
  results["dryRunPeakRssMiB"] = rss;
  rows.push([
    `peak RSS, dry run (listing + plan) of 10,000 / ${Number(values["rss-objects"]).toLocaleString("en")} objects`,
    `${rss[10_000]?.toFixed(0) ?? "?"} MiB / ${rss[Number(values["rss-objects"])]?.toFixed(0) ?? "?"} MiB`,
    ...selected.slice(1).map(() => "–"),
    "–",
  ]);

  const md = [
    `# hcexport benchmark`,
    ``,
    `Machine: ${results["machine"] as string}. Date: ${results["date"] as string}. Concurrency ${C} for every tool (rclone: --transfers/--checkers ${C}; gcloud chooses its own).`,
    `The local cloud runs in its own process; each tool runs as a separate process, one after the other.`,
    ``,
    `| ${rows[0]!.join(" | ")} |`,
    `|${rows[0]!.map(() => "---").join("|")}|`,
    ...rows.slice(1).map((r) => `| ${r.join(" | ")} |`),
    ``,
  ].join("\n");
  await writeFile(path.join(work, "results.md"), md);
  await writeFile(path.join(work, "results.json"), `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(md);
}

await main();
