/**
 * The local cloud's raw serving rate: a minimal parallel client (undici, keep-alive, C
 * connections) lists the bucket and downloads every object once, discarding the bytes. This is
 * the ceiling any mirror tool can reach against the emulator on this machine.
 * Usage: node scripts/serve-rate.ts [--objects 10000] [--size 150000] [--concurrency 32] [--url URL --bucket B --prefix P]
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { parseArgs } from "node:util";
import { Agent, request } from "undici";

const { values } = parseArgs({
  // Imported by bench.ts: only parse our own command line.
  args: import.meta.url === `file://${process.argv[1]}` ? process.argv.slice(2) : [],
  options: {
    objects: { type: "string", default: "10000" },
    size: { type: "string", default: "150000" },
    concurrency: { type: "string", default: "32" },
    url: { type: "string" },
    bucket: { type: "string", default: "bench-bucket" },
    prefix: { type: "string", default: "train" },
    json: { type: "boolean", default: false },
  },
});

/** Lists all names under a prefix, then GETs each with `concurrency` workers; returns the rate. */
export async function measureServeRate(
  baseUrl: string,
  bucket: string,
  prefix: string,
  concurrency: number,
  /** PEM CA to trust when `baseUrl` is an `https://` local cloud. */
  ca?: string,
): Promise<{
  objects: number;
  bytes: number;
  seconds: number;
  objectsPerSecond: number;
  mibPerSecond: number;
  listSeconds: number;
}> {
  const agent = new Agent({
    connections: concurrency,
    keepAliveTimeout: 30_000,
    ...(ca === undefined ? {} : { connect: { ca } }),
  });
  const names: string[] = [];
  const listStart = performance.now();
  let token: string | undefined;
  do {
    const res = await request(
      `${baseUrl}/storage/v1/b/${bucket}/o?prefix=${encodeURIComponent(`${prefix}/`)}&fields=nextPageToken,items(name)${token ? `&pageToken=${token}` : ""}`,
      { dispatcher: agent },
    );
    const page = (await res.body.json()) as { items?: Array<{ name: string }>; nextPageToken?: string };
    names.push(...(page.items ?? []).map((i) => i.name));
    token = page.nextPageToken;
  } while (token !== undefined);
  const listSeconds = (performance.now() - listStart) / 1000;
  let next = 0;
  let bytes = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < names.length) {
        const name = names[next++]!;
        const res = await request(
          `${baseUrl}/download/storage/v1/b/${bucket}/o/${encodeURIComponent(name)}?alt=media`,
          { dispatcher: agent },
        );
        for await (const chunk of res.body) bytes += (chunk as Buffer).length;
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  await agent.close();
  return {
    objects: names.length,
    bytes,
    seconds,
    objectsPerSecond: names.length / seconds,
    mibPerSecond: bytes / 1048576 / seconds,
    listSeconds,
  };
}

async function main(): Promise<void> {
  let url = values.url;
  let server: ReturnType<typeof spawn> | undefined;
  if (url === undefined) {
    server = spawn(
      process.execPath,
      [
        "scripts/bench-server.ts",
        "--objects",
        values.objects,
        "--size",
        values.size,
        "--bucket",
        values.bucket,
        "--prefix",
        values.prefix,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    server.stdout!.setEncoding("utf8");
    url = await new Promise<string>((resolve, reject) => {
      server!.stdout!.on("data", (d: string) => {
        out += d;
        const m = /listening on (\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      server!.once("exit", () => reject(new Error("bench server exited")));
    });
  }
  try {
    const r = await measureServeRate(url, values.bucket, values.prefix, Number(values.concurrency));
    if (values.json) console.log(JSON.stringify(r));
    else
      console.log(
        `local cloud serving rate: ${r.objects} objects (${(r.bytes / 1048576).toFixed(0)} MiB) in ${r.seconds.toFixed(2)} s = ${r.objectsPerSecond.toFixed(0)} objects/s, ${r.mibPerSecond.toFixed(0)} MiB/s (concurrency ${values.concurrency}); listing took ${r.listSeconds.toFixed(2)} s`,
      );
  } finally {
    if (server !== undefined) {
      server.kill("SIGTERM");
      await once(server, "exit");
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
