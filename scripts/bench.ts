/**
 * `npm run bench`: hcexport's mirror vs rclone vs `gcloud storage rsync` on the local cloud, side
 * by side in one run, plus the local cloud's raw serving rate (the ceiling): cold copy (plain, with
 * added latency per response, over HTTPS), no-op and 1 % re-syncs, big objects, start-up, and
 * hcexport's peak RSS for a dry run and a real mirror at two object counts. Each timed run starts
 * after an untimed `sync`, and records its CPU time and the local cloud's; the trees written are removed
 * at the end (see Trash). Each cold copy also gets each tool's time until its bytes are on disk for
 * sure (its run, then `sync`), and the plain and big ones the disk's own time to write the same
 * files durably (the floor of any durable copy). A column for
 * `hcexport --no-fsync` shows what the durability barriers cost (`--no-no-fsync-column` drops it). Writes
 * bench-out/results.{md,json} and prints the table.
 *
 *   npm run bench                      # 10,000 × 150 KB, 3 × 100 MB, RSS at 10k/1M (dry) and 2k/20k (real)
 *   npm run bench -- --objects 500 --big 0 --rss-objects 20000 --real-rss 200,2000 --no-gcloud   # reduced
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { existsSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { request } from "undici";
import {
  diskFloorFilesSeconds,
  diskFloorSeconds,
  measure,
  measureStartup,
  processCpuSeconds,
  settleDisk,
  startServer,
  stopServer,
  Trash,
  type Measured,
  type Server,
} from "./bench-lib.ts";
import { measureServeRate } from "./serve-rate.ts";

const { values } = parseArgs({
  options: {
    objects: { type: "string", default: "10000" },
    size: { type: "string", default: "150000" },
    concurrency: { type: "string", default: "32" },
    big: { type: "string", default: "3" },
    "big-size": { type: "string", default: String(100 * 1024 * 1024) },
    "rss-objects": { type: "string", default: "1000000" },
    "real-rss": { type: "string", default: "2000,20000" },
    "rss-size": { type: "string", default: "16000" },
    latency: { type: "string", default: "20" },
    tls: { type: "boolean", default: true },
    "startup-runs": { type: "string", default: "20" },
    gcloud: { type: "boolean", default: true },
    rclone: { type: "boolean", default: true },
    /** A column for `hcexport mirror --no-fsync` (rclone's durability): what the barriers cost. */
    "no-fsync-column": { type: "boolean", default: true },
    out: { type: "string", default: "bench-out" },
  },
  allowNegative: true,
});

const C = Number(values.concurrency);
const work = path.resolve(values.out);
const launcher = path.resolve("bin/hcexport.js");
const has = (bin: string) => (process.env["PATH"] ?? "").split(":").some((d) => existsSync(path.join(d, bin)));
const useRclone = values.rclone && has("rclone");
const useGcloud = values.gcloud && has("gcloud");

const gcloudEnv = (s: Server): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CLOUDSDK_CONFIG: path.join(work, "gcloud-config"),
    CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE: `${s.url}/`,
    CLOUDSDK_AUTH_DISABLE_CREDENTIALS: "True",
    CLOUDSDK_CORE_DISABLE_PROMPTS: "1",
    CLOUDSDK_CORE_PROJECT: "bench",
  };
  if (s.ca !== undefined) {
    env["CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE"] = s.ca;
    // requests (inside gcloud) would let these win over custom_ca_certs_file.
    delete env["REQUESTS_CA_BUNDLE"];
    delete env["CURL_CA_BUNDLE"];
  }
  return env;
};

// The installed command (bin/hcexport.js: V8's compile cache, the fast help-layout modules), as a user runs it.
const hcexportMirror = (s: Server, prefix: string, dir: string, ...extra: string[]) =>
  measure(process.execPath, [
    launcher,
    "mirror",
    `gs://bench-bucket/${prefix}`,
    dir,
    "--emulator",
    s.url,
    ...(s.ca === undefined ? [] : ["--ca-cert", s.ca]),
    "--concurrency",
    String(C),
    "--quiet",
    ...extra,
  ]);

const tools = {
  hcexport: (s: Server, prefix: string, dir: string) => hcexportMirror(s, prefix, dir),
  "hcexport --no-fsync": (s: Server, prefix: string, dir: string) => hcexportMirror(s, prefix, dir, "--no-fsync"),
  rclone: (s: Server, prefix: string, dir: string) =>
    measure("rclone", [
      "copy",
      `:gcs:bench-bucket/${prefix}`,
      dir,
      "--gcs-anonymous",
      "--gcs-endpoint",
      `${s.url}/storage/v1/`,
      ...(s.ca === undefined ? [] : ["--ca-cert", s.ca]),
      "--transfers",
      String(C),
      "--checkers",
      String(C),
      "--config",
      "/dev/null",
    ]),
  gcloud: (s: Server, prefix: string, dir: string) =>
    measure("gcloud", ["storage", "rsync", "-r", `gs://bench-bucket/${prefix}`, dir], gcloudEnv(s)),
};
type Tool = keyof typeof tools;
/** A tool's working directory name. */
const slug = (t: Tool) => t.replace(/[^a-z]+/g, "-");

/** What one timed run cost: the tool's wall and CPU time, and the local cloud's CPU meanwhile. */
interface Run extends Measured {
  readonly serverCpu?: number;
  /** A `sync` right after the run: what the tool left in the page cache costs to make durable (≈ 0 for hcexport). */
  readonly syncAfter: number;
}

const trash = new Trash();

/** One timed run of tool `t`, after the disk has settled (untimed `sync`), with the server's CPU time. */
async function run(t: Tool, s: Server, prefix: string, dir: string, bytes = 0): Promise<Run> {
  await trash.room(dir, bytes);
  settleDisk();
  const before = processCpuSeconds(s.child.pid);
  const m = await tools[t](s, prefix, dir);
  const after = processCpuSeconds(s.child.pid);
  const s0 = performance.now();
  settleDisk();
  const syncAfter = (performance.now() - s0) / 1000;
  return { ...m, syncAfter, ...(before === undefined || after === undefined ? {} : { serverCpu: after - before }) };
}

/** Runs by tool for results.json (without the commands' output). */
const runsJson = (runs: Record<string, Run>) =>
  Object.fromEntries(Object.entries(runs).map(([t, m]) => [t, { ...m, stdout: undefined }]));

/** `user + sys s; cloud s` of a run: where its wall time could go on this machine's 2 cores. */
const cpuCell = (r: Run | undefined) =>
  r?.cpu === undefined
    ? "?"
    : `${r.cpu.user.toFixed(1)} + ${r.cpu.sys.toFixed(1)} s; cloud ${r.serverCpu?.toFixed(1) ?? "?"} s`;
/**
 * The row under a cold copy: each tool's time until its bytes are on disk for sure (its run, then
 * a `sync`), and what the disk alone needs for the same files, when measured.
 */
const onDiskRow = (runs: Record<string, Run | undefined>, tools: readonly Tool[], floor?: number): string[] => [
  `↳ on disk for sure: the run, then \`sync\`${floor === undefined ? "" : `; the disk alone writes the same files durably in ${floor.toFixed(2)} s`}`,
  ...tools.map((t) =>
    t === "hcexport --no-fsync" || runs[t] === undefined
      ? "–"
      : `${(runs[t]!.seconds + runs[t]!.syncAfter).toFixed(2)} s`,
  ),
  floor === undefined ? "–" : `${floor.toFixed(2)} s`,
];

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

const secs = (m: Measured | undefined) => m?.seconds ?? NaN;
const rate = (n: number, seconds: number) => `${seconds.toFixed(2)} s (${Math.round(n / seconds)} obj/s)`;
const mib = (x: number | undefined) => (x === undefined ? "?" : `${x.toFixed(0)} MiB`);

/** One cold copy of `n` objects by every selected tool, and the raw client's ceiling, on one server. */
async function coldCopy(
  label: string,
  serverArgs: readonly string[],
  n: number,
  selected: readonly Tool[],
): Promise<{ rows: string[][]; result: Record<string, unknown> }> {
  const server = await startServer(["--objects", String(n), "--size", values.size, "--prefix", "train", ...serverArgs]);
  try {
    const ca = server.ca === undefined ? undefined : readFileSync(server.ca, "utf8");
    const ceiling = await measureServeRate(server.url, "bench-bucket", "train", C, ca);
    const times: Record<string, Run> = {};
    for (const t of selected) {
      const dir = path.join(work, `${slug(t)}-${label.replace(/\W+/g, "-")}`);
      times[t] = await run(t, server, "train", dir, n * Number(values.size));
      process.stderr.write(`${label}: ${t} ${times[t]!.seconds.toFixed(2)} s\n`);
      trash.discard(dir);
    }
    return {
      rows: [
        [
          `cold copy, ${n} × ${Math.round(Number(values.size) / 1000)} KB, ${label}`,
          ...selected.map((t) => rate(n, secs(times[t]))),
          rate(n, ceiling.seconds),
        ],
        [`↳ CPU (user + sys; local cloud)`, ...selected.map((t) => cpuCell(times[t])), "–"],
        onDiskRow(times, selected),
      ],
      result: {
        runs: runsJson(times),
        ceiling,
      },
    };
  } finally {
    await stopServer(server);
  }
}

async function main(): Promise<void> {
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const selected: Tool[] = [
    "hcexport",
    ...(values["no-fsync-column"] ? (["hcexport --no-fsync"] as const) : []),
    ...(useRclone ? (["rclone"] as const) : []),
    ...(useGcloud ? (["gcloud"] as const) : []),
  ];
  const others = () => selected.slice(1).map(() => "–");
  const n = Number(values.objects);
  const sizeKB = Math.round(Number(values.size) / 1000);
  const results: Record<string, unknown> = {
    machine: `${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.cpus()[0]?.model ?? "?"}, node ${process.version}`,
    loadAverage: os.loadavg(),
    date: new Date().toISOString(),
    objects: n,
    objectBytes: Number(values.size),
    concurrency: C,
  };
  const rows: string[][] = [["scenario", ...selected, "ceiling (raw client)"]];

  // Start-up: the installed launcher (bin/hcexport.js) against a bare node.
  const startup = measureStartup(launcher, Number(values["startup-runs"]));
  results["startup"] = startup;
  const beyond = (ms: number) => `${ms.toFixed(0)} ms (+${(ms - startup.nodeMs).toFixed(0)})`;
  rows.push([
    `start-up, median of ${startup.runs}: --version / --help (node -e 0: ${startup.nodeMs.toFixed(0)} ms)`,
    `${beyond(startup.versionMs)} / ${beyond(startup.helpMs)}`,
    ...others(),
    "–",
  ]);
  process.stderr.write(`start-up: ${JSON.stringify(startup)}\n`);

  // Small objects: ceiling, cold copy, no-op, 1 % changed.
  let server = await startServer(["--objects", String(n), "--size", values.size, "--prefix", "train"]);
  try {
    const ceiling = await measureServeRate(server.url, "bench-bucket", "train", C);
    results["ceiling"] = ceiling;
    const cold: Record<string, Run> = {};
    const noop: Record<string, Run> = {};
    for (const t of selected) {
      cold[t] = await run(t, server, "train", path.join(work, slug(t)), n * Number(values.size));
      noop[t] = await run(t, server, "train", path.join(work, slug(t)));
      process.stderr.write(`${t}: cold ${cold[t]!.seconds.toFixed(2)} s, no-op ${noop[t]!.seconds.toFixed(2)} s\n`);
    }
    const smallFloor = diskFloorFilesSeconds(path.join(work, "disk-floor-files"), n, Number(values.size));
    trash.discard(path.join(work, "disk-floor-files"));
    results["smallDiskFloorSeconds"] = smallFloor;
    const changedCount = await changeSome(server.url, "train", 0.01);
    const changed: Record<string, Run> = {};
    for (const t of selected) changed[t] = await run(t, server, "train", path.join(work, slug(t)));
    results["small"] = { cold: runsJson(cold), noop: runsJson(noop), changed: runsJson(changed), changedCount };
    rows.push([
      `cold copy, ${n} × ${sizeKB} KB`,
      ...selected.map((t) => rate(n, cold[t]!.seconds)),
      rate(n, ceiling.seconds),
    ]);
    rows.push([`↳ CPU (user + sys; local cloud)`, ...selected.map((t) => cpuCell(cold[t])), "–"]);
    rows.push(onDiskRow(cold, selected, smallFloor));
    rows.push([`no-op re-sync`, ...selected.map((t) => `${noop[t]!.seconds.toFixed(2)} s`), "–"]);
    rows.push([
      `re-sync, ${changedCount} changed (1 %)`,
      ...selected.map((t) => `${changed[t]!.seconds.toFixed(2)} s`),
      "–",
    ]);
  } finally {
    await stopServer(server);
  }
  for (const t of selected) trash.discard(path.join(work, slug(t)));

  // Realistic network: latency added to every response, then HTTPS.
  if (Number(values.latency) > 0) {
    const r = await coldCopy(`${values.latency} ms added per response`, ["--latency", values.latency], n, selected);
    rows.push(...r.rows);
    results["latency"] = { latencyMs: Number(values.latency), ...r.result };
  }
  if (values.tls) {
    const r = await coldCopy("HTTPS", ["--tls"], n, selected);
    rows.push(...r.rows);
    results["tls"] = r.result;
  }

  // A few large objects.
  const big = Number(values.big);
  if (big > 0) {
    server = await startServer(["--objects", String(big), "--size", values["big-size"], "--prefix", "big"]);
    try {
      const bigTools = selected.filter((t) => t !== "gcloud" || big * Number(values["big-size"]) <= 2 ** 30);
      const runs: Record<string, Run> = {};
      const bigBytes = big * Number(values["big-size"]);
      for (const t of bigTools) runs[t] = await run(t, server, "big", path.join(work, `${slug(t)}-big`), bigBytes);
      const floor = diskFloorSeconds(work, bigBytes);
      const times = Object.fromEntries(Object.entries(runs).map(([t, m]) => [t, m.seconds]));
      const ceiling = await measureServeRate(server.url, "bench-bucket", "big", Math.min(C, big));
      const mb = (big * Number(values["big-size"])) / 2 ** 20;
      results["big"] = {
        objects: big,
        bytes: Number(values["big-size"]),
        runs: runsJson(runs),
        ceiling,
        diskFloorSeconds: floor,
      };
      rows.push([
        `cold copy, ${big} × ${Math.round(Number(values["big-size"]) / 2 ** 20)} MiB`,
        ...selected.map((t) =>
          times[t] === undefined ? "–" : `${times[t]!.toFixed(2)} s (${Math.round(mb / times[t]!)} MiB/s)`,
        ),
        `${ceiling.seconds.toFixed(2)} s (${Math.round(ceiling.mibPerSecond)} MiB/s)`,
      ]);
      rows.push([`↳ CPU (user + sys; local cloud)`, ...selected.map((t) => (runs[t] ? cpuCell(runs[t]) : "–")), "–"]);
      rows.push(onDiskRow(runs, selected, floor));
    } finally {
      await stopServer(server);
    }
    for (const t of selected) trash.discard(path.join(work, `${slug(t)}-big`));
  }

  // Peak RSS of hcexport: a listing-only run (dry run), then a real mirror, each at two object counts.
  const hcx = (s: Server, dir: string, ...extra: string[]) =>
    measure(process.execPath, [
      launcher,
      "mirror",
      "gs://bench-bucket/many",
      dir,
      "--emulator",
      s.url,
      "--quiet",
      ...extra,
    ]);
  const rss: Record<string, number | undefined> = {};
  const dryCounts = [10_000, Number(values["rss-objects"])];
  for (const count of dryCounts) {
    server = await startServer(["--objects", String(count), "--size", "16", "--prefix", "many"]);
    try {
      rss[count] = (await hcx(server, path.join(work, `rss-${count}`), "--dry-run")).rssMiB;
    } finally {
      await stopServer(server);
    }
  }
  results["dryRunPeakRssMiB"] = rss;
  rows.push([
    `peak RSS, dry run (listing + plan) of ${dryCounts.map((c) => c.toLocaleString("en")).join(" / ")} objects`,
    dryCounts.map((c) => mib(rss[c])).join(" / "),
    ...others(),
    "–",
  ]);
  const realCounts = values["real-rss"].split(",").map(Number);
  const real: Record<string, { rssMiB?: number; seconds: number }> = {};
  for (const count of realCounts) {
    server = await startServer(["--objects", String(count), "--size", values["rss-size"], "--prefix", "many"]);
    try {
      const dir = path.join(work, `real-rss-${count}`);
      const m = await hcx(server, dir, "--concurrency", String(C));
      real[count] = { seconds: m.seconds, ...(m.rssMiB === undefined ? {} : { rssMiB: m.rssMiB }) };
      trash.discard(dir);
    } finally {
      await stopServer(server);
    }
  }
  results["mirrorPeakRssMiB"] = { objectBytes: Number(values["rss-size"]), ...real };
  rows.push([
    `peak RSS, real mirror of ${realCounts.map((c) => c.toLocaleString("en")).join(" / ")} × ${Math.round(Number(values["rss-size"]) / 1000)} KB`,
    realCounts.map((c) => mib(real[c]?.rssMiB)).join(" / "),
    ...others(),
    "–",
  ]);

  const md = [
    `# hcexport benchmark`,
    ``,
    `Machine: ${results["machine"] as string}; load average at start ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(
        " ",
      )}. Date: ${results["date"] as string}. Concurrency ${C} for every tool (rclone: --transfers/--checkers ${C}; gcloud chooses its own).`,
    `The local cloud runs in its own process; each tool runs as a separate process, one after the other, each after an untimed \`sync\` (no run waits on the writeback of the one before); the trees they wrote are removed only at the end (ext4 without a journal makes creates slow for 30 s after a big removal). "↳ CPU": the tool's user + system CPU seconds (GNU time) and the local cloud's over the same run (/proc/PID/stat); on 2 cores a run cannot take less wall time than half their sum. HTTPS: a generated CA (rclone --ca-cert, gcloud core/custom_ca_certs_file, hcexport --ca-cert, the raw client undici connect.ca).`,
    ``,
    `| ${rows[0]!.join(" | ")} |`,
    `|${rows[0]!.map(() => "---").join("|")}|`,
    ...rows.slice(1).map((r) => `| ${r.join(" | ")} |`),
    ``,
  ].join("\n");
  await trash.empty();
  await writeFile(path.join(work, "results.md"), md);
  await writeFile(path.join(work, "results.json"), `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(md);
}

await main();
