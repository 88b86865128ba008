import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { mkdtemp, readFile, rm, stat, truncate } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { dicomwebSource } from "../../src/dicomweb/client.ts";
import { pull, type PullEvent, type PullSummary } from "../../src/dicomweb/pull.ts";
import { SIIM_FHIR_STORE, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { generateInstance } from "../../src/emulator/dataset/instances.ts";
import { annotationStats } from "../../src/emulator/dataset/annotations.ts";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { noFaults } from "../../src/emulator/types.ts";
import { HttpClient } from "../../src/net/http-client.ts";
import { listFiles } from "../support/chaos.ts";
import { cliIn, type CliResult } from "../support/cli.ts";

const fastRetry = { retries: 12, backoff: { initialMs: 5, maxMs: 50, multiplier: 2, jitter: "equal" as const } };
const TRAIN = 240;
let cloud: LocalCloud;
let client: HttpClient;
let tmp: string;
let base: string;

const files = listFiles;

/** Every instance of the store is at STUDY/SERIES/INSTANCE.dcm with the server's exact bytes; nothing else but state. */
async function assertPulled(dir: string): Promise<void> {
  const instances = cloud.healthcare.instances(SIIM_TRAIN_STORE);
  for (const inst of instances) {
    assert.deepEqual(
      await readFile(path.join(dir, inst.studyUid, inst.seriesUid, `${inst.sopInstanceUid}.dcm`)),
      inst.data(),
      inst.sopInstanceUid,
    );
  }
  const all = (await files(dir)).filter((f) => !f.startsWith(".hcexport/"));
  assert.equal(all.length, instances.length, "exactly one file per instance");
  assert.ok(!all.some((f) => f.includes(".hcx-tmp-")), "no temp files left");
}

function run(
  dest: string,
  o: {
    mode?: "instance" | "series" | "study";
    signal?: AbortSignal;
    onEvent?: (e: PullEvent) => void;
    pageSize?: number;
    stageThreads?: number;
    /** Called as each WADO request is made. */
    onRetrieve?: () => void;
  } = {},
): Promise<PullSummary> {
  const source = dicomwebSource(client, base);
  const onRetrieve = o.onRetrieve;
  return pull({
    source:
      onRetrieve === undefined
        ? source
        : {
            ...source,
            retrieve: (p, accept, signal) => {
              onRetrieve();
              return source.retrieve(p, accept, signal);
            },
            retrieveInto: (p, accept, into, signal) => {
              onRetrieve();
              return source.retrieveInto!(p, accept, into, signal);
            },
          },
    label: "test",
    dest,
    pageSize: o.pageSize ?? 50,
    concurrency: 8,
    mode: o.mode ?? "instance",
    fsync: false,
    retry: fastRetry,
    ...(o.onEvent === undefined ? {} : { onEvent: o.onEvent }),
    ...(o.signal === undefined ? {} : { signal: o.signal }),
    ...(o.stageThreads === undefined ? {} : { stageThreads: o.stageThreads }),
  });
}

before(async () => {
  cloud = await startLocalCloud({ dataset: { train: TRAIN, test: 10, seed: 11, instanceBytes: 12_000 } });
  client = new HttpClient({ retry: fastRetry, connections: 16 });
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-dicomweb-"));
  base = `${cloud.baseUrl}/v1/${SIIM_TRAIN_STORE}/dicomWeb`;
});
after(async () => {
  await client.close();
  await cloud.close();
  await rm(tmp, { recursive: true, force: true });
});

describe("dicomweb pull against the local cloud", () => {
  // Written on this thread (HCX_STAGE_THREADS=0), and on a stage thread (the default), which
  // checks the digest where it writes and may still be writing when the run is interrupted.
  for (const stageThreads of [0, 1]) {
    const on = stageThreads === 0 ? "" : ", on a stage thread";
    test(`under 5% 503 + 5% 429 + 2% resets + 1% truncation + 1% corruption: every instance byte-identical, corruption caught by the digest${on}`, async () => {
      cloud.faults = {
        ...noFaults,
        rate503: 0.05,
        rate429: 0.05,
        resetRate: 0.02,
        truncateRate: 0.01,
        corruptRate: 0.01,
        pathFilter: "/dicomWeb/",
      };
      const dest = path.join(tmp, `faults-${stageThreads}`);
      const retries: string[] = [];
      const s = await run(dest, {
        stageThreads,
        onEvent: (e) => void (e.kind === "dicomweb.retry" && retries.push(e.reason)),
      });
      cloud.faults = { ...noFaults };
      assert.equal(s.failed, 0, JSON.stringify(s.problems));
      assert.equal(s.listed, TRAIN);
      assert.equal(s.downloaded, TRAIN);
      assert.equal(
        s.digestVerified,
        TRAIN,
        "the emulator answers Want-Repr-Digest, so every body was checked against it",
      );
      assert.ok(retries.length >= 5, `faults were injected and retried (${retries.length})`);
      assert.ok(
        // Caught by the digest, by the Part 10 structure (a flipped byte in a header), or as a short body.
        retries.some((r) => /crc32c|sha-256|md5|truncated|bytes|invalid VR|element|other side closed/.test(r)),
        `a corrupt or short body was caught: ${retries.join(" | ")}`,
      );
      await assertPulled(dest);
    });

    test(`interrupted, then rerun: retrieves only what is missing and sweeps the killed run's leftovers${on}`, async () => {
      const dest = path.join(tmp, `resume-${stageThreads}`);
      const ac = new AbortController();
      // Interrupted as the 80th request is made, not at a count of commits: commits come in
      // batches, and a fast run had committed all 240 before the first batch was counted.
      let requests = 0;
      await run(dest, {
        stageThreads,
        signal: ac.signal,
        onRetrieve: () => void (++requests === 80 && ac.abort()),
      }).catch(() => undefined);
      const left = await files(dest);
      assert.deepEqual(
        left.filter((f) => f.includes(".hcx-tmp-")),
        [],
        "an interrupted run waits for the instances being written, and commits them: no temp file is left",
      );
      const before = left.filter((f) => f.endsWith(".dcm"));
      // The bodies received whole before it are committed (up to the 79 asked for before it).
      assert.ok(before.length >= 20 && before.length < 80, `${before.length} files after the interruption`);
      const retrievesBefore = countRetrieves();
      const s = await run(dest);
      assert.equal(s.skipped, before.length);
      assert.equal(s.downloaded, TRAIN - before.length);
      assert.equal(
        countRetrieves() - retrievesBefore,
        TRAIN - before.length,
        "no instance already on disk was requested again",
      );
      await assertPulled(dest);
      const again = await run(dest);
      assert.deepEqual([again.downloaded, again.skipped], [0, TRAIN]);
      // An empty file under a final name (a power loss with --no-fsync) is not "already here".
      await truncate(path.join(dest, before[0]!), 0);
      const mended = await run(dest);
      assert.deepEqual([mended.downloaded, mended.skipped], [1, TRAIN - 1]);
      await assertPulled(dest);
    });
  }

  for (const mode of ["series", "study"] as const) {
    test(`${mode} mode: one multipart stream per ${mode}, streamed apart, with resets and truncations mid-stream`, async () => {
      cloud.faults = {
        ...noFaults,
        resetRate: 0.05,
        truncateRate: 0.05,
        rate503: 0.03,
        pathFilter: "/dicomWeb/studies/",
      };
      const dest = path.join(tmp, mode);
      const s = await run(dest, { mode });
      cloud.faults = { ...noFaults };
      assert.equal(s.failed, 0, JSON.stringify(s.problems));
      assert.equal(s.downloaded, TRAIN);
      await assertPulled(dest);
    });
  }

  test("the CLI: STORE form, --json summary, and exit 5 naming what failed when instances cannot be had", async () => {
    const dest = path.join(tmp, "cli");
    const r = await cli([
      "--emulator",
      cloud.baseUrl,
      "--json",
      "dicomweb",
      "pull",
      SIIM_TRAIN_STORE,
      dest,
      "--page-size",
      "100",
      "--concurrency",
      "4",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const result = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { kind: string; summary?: PullSummary })
      .find((l) => l.kind === "result");
    assert.equal(result?.summary?.downloaded, TRAIN);
    await assertPulled(dest);
  });

  test("fhir get: the DocumentReference as JSON, and --attachment fetches the CSV with a summary matching the generated data", async () => {
    const ref = "DocumentReference/d70d8f3e-990a-4bc0-b11f-c87349f5d4eb";
    const shown = await cli(["--emulator", cloud.baseUrl, "fhir", "get", SIIM_FHIR_STORE, ref]);
    assert.equal(shown.code, 0, shown.stderr);
    const doc = JSON.parse(shown.stdout) as { resourceType: string; content: Array<{ attachment: { url: string } }> };
    assert.equal(doc.resourceType, "DocumentReference");
    assert.equal(doc.content[0]!.attachment.url, cloud.annotationsUrl);
    const dir = path.join(tmp, "annotations");
    const got = await cli(["--emulator", cloud.baseUrl, "fhir", "get", SIIM_FHIR_STORE, ref, "--attachment", dir]);
    assert.equal(got.code, 0, got.stderr);
    const csvFile = (await files(dir)).find((f) => f.endsWith(".csv"))!;
    assert.equal(await readFile(path.join(dir, csvFile), "utf8"), cloud.annotationsCsv);
    const stats = annotationStats(cloud.annotationsCsv);
    assert.match(
      got.stdout,
      new RegExp(`${stats.images} images, ${stats.positive} with pneumothorax, ${stats.masks} masks`),
    );
    const missing = await cli(["--emulator", cloud.baseUrl, "fhir", "get", SIIM_FHIR_STORE, "DocumentReference/nope"]);
    assert.notEqual(missing.code, 0);
    const bad = await cli(["--emulator", cloud.baseUrl, "fhir", "get", SIIM_FHIR_STORE, "../etc/passwd"]);
    assert.equal(bad.code, 2);
  });
});

describe("dicomweb pull against a hostile server", () => {
  let server: Server;
  let url: string;
  const good = generateInstance(1, { seed: 5, instanceBytes: 4000, storeIndex: 0 });
  const other = generateInstance(2, { seed: 5, instanceBytes: 4000, storeIndex: 0 });
  before(async () => {
    server = createServer((req, res) => {
      const u = new URL(req.url ?? "/", "http://x");
      if (u.pathname === "/dw/instances") {
        if (u.searchParams.get("offset") !== "0") return void res.writeHead(204).end();
        const row = (st: string, se: string, i: string) => ({
          "0020000D": { vr: "UI", Value: [st] },
          "0020000E": { vr: "UI", Value: [se] },
          "00080018": { vr: "UI", Value: [i] },
        });
        res.writeHead(200, { "content-type": "application/dicom+json" });
        return void res.end(
          JSON.stringify([
            row("..", "..", "x"),
            row("1.2", "/etc", "1.3"),
            row(good.studyUid, good.seriesUid, good.sopInstanceUid),
            row(good.studyUid, good.seriesUid, "1.2.3.4.5"),
          ]),
        );
      }
      if (u.pathname === "/dw/studies") return void res.writeHead(204).end();
      if (u.pathname.endsWith(`/instances/${good.sopInstanceUid}`)) {
        res.writeHead(200, { "content-type": "application/dicom" });
        return void res.end(good.data());
      }
      // Asked for 1.2.3.4.5, answers with a different instance's bytes.
      res.writeHead(200, { "content-type": "application/dicom" });
      res.end(other.data());
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}/dw`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  test("UIDs that are not digits and dots are refused, a file that is not the one asked for is not written, nothing lands outside DIR", async () => {
    const dest = path.join(tmp, "hostile", "dest");
    const s = await pull({
      source: dicomwebSource(client, url),
      label: url,
      dest,
      pageSize: 100,
      concurrency: 2,
      fsync: false,
      retry: { retries: 1, backoff: { initialMs: 1, maxMs: 1, multiplier: 1, jitter: "none" } },
    });
    assert.equal(s.refused, 2);
    assert.equal(s.downloaded, 1);
    assert.equal(s.failed, 1);
    assert.match(
      s.problems.map((p) => p.reason).join("\n"),
      /asked for study [0-9.]+, the server sent a file of study [0-9.]+/,
    );
    const all = (await files(path.join(tmp, "hostile"))).filter((f) => !f.includes(".hcexport/"));
    assert.deepEqual(all, [`dest/${good.studyUid}/${good.seriesUid}/${good.sopInstanceUid}.dcm`]);
    assert.ok((await stat(path.join(tmp, "hostile", "dest"))).isDirectory());
  });

  test("the CLI on a URL: exit 5 with counts and the fix; credentials from the URL go to the server but never to the output", async () => {
    let sawAuth = "";
    server.on("request", (req) => void (sawAuth ||= req.headers.authorization ?? ""));
    const withCreds = url.replace("http://", "http://alice:s3cr3t-pw@");
    const r = await cli(["dicomweb", "pull", withCreds, path.join(tmp, "hostile-cli"), "--verbose"]);
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /3 of 4 instances were not pulled \(1 failed, 2 refused\)/);
    assert.equal(sawAuth, `Basic ${Buffer.from("alice:s3cr3t-pw").toString("base64")}`);
    assert.ok(!(r.stdout + r.stderr).includes("s3cr3t-pw"), "the password never appears in the output");
  });
});

function countRetrieves(): number {
  return cloud.requests.entries.filter(
    (e) => e.method === "GET" && /\/dicomWeb\/studies\/.+\/instances\/[^/]+$/.test(e.path),
  ).length;
}

function cli(argv: string[]): Promise<CliResult> {
  return cliIn(argv, { cwd: tmp });
}
