import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Storage } from "@google-cloud/storage";
import { startEmulator, type RunningEmulator } from "../../src/emulator/server.ts";
import { noFaults } from "../../src/emulator/types.ts";

// @google-cloud/storage (the real SDK) against the local cloud, pointed with apiEndpoint
// (STORAGE_EMULATOR_HOST would override it and drop /storage/v1).
let emu: RunningEmulator;
let storage: Storage;
before(async () => {
  delete process.env["STORAGE_EMULATOR_HOST"];
  emu = await startEmulator();
  storage = new Storage({ apiEndpoint: emu.baseUrl, projectId: "sdk-project", retryOptions: { maxRetries: 0 } });
});
after(() => emu.close());

test("bucket create (409 on repeat), uploads both ways, paged listing, verified downloads", async () => {
  const [bucket] = await storage.createBucket("sdk-bucket", { location: "us-central1" });
  await assert.rejects(storage.createBucket("sdk-bucket"), (e: { code?: number }) => e.code === 409);
  const small = Buffer.from("small object");
  const big = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
  await bucket.file("up/simple.txt").save(small, { resumable: false });
  await bucket.file("up/resumable.bin").save(big, { resumable: true });
  assert.deepEqual(emu.store.readObject("sdk-bucket", "up/simple.txt"), small);
  assert.deepEqual(emu.store.readObject("sdk-bucket", "up/resumable.bin"), big);

  for (let i = 0; i < 25; i++)
    emu.store.putObject("sdk-bucket", `many/${String(i).padStart(3, "0")}`, Buffer.from(String(i)), "text/plain");
  const [files, , resp] = await bucket.getFiles({ prefix: "many/", maxResults: 10, autoPaginate: false });
  assert.equal(files.length, 10);
  assert.ok((resp as { nextPageToken?: string }).nextPageToken);
  // Page through with the SDK's own nextQuery, 7 per page: 4 pages.
  const names: string[] = [];
  let query: Record<string, unknown> | null = { prefix: "many/", maxResults: 7, autoPaginate: false };
  let pages = 0;
  while (query !== null) {
    const [page, next]: [Array<{ name: string }>, Record<string, unknown> | null] = (await bucket.getFiles(
      query,
    )) as never;
    names.push(...page.map((f) => f.name));
    query = next;
    pages++;
  }
  assert.equal(pages, 4);
  assert.deepEqual(
    names,
    Array.from({ length: 25 }, (_, i) => `many/${String(i).padStart(3, "0")}`),
  );

  const [got] = await bucket.file("up/resumable.bin").download();
  assert.deepEqual(got, big);
});

test("autoPaginate walks more than 1000 objects, 1000 per page, in byte order", async () => {
  const names = Array.from({ length: 2500 }, (_, i) => `auto/${String(i).padStart(5, "0")}.dcm`);
  for (const n of names) emu.store.putObject("sdk-bucket", n, Buffer.from(n), "application/dicom");
  emu.requests.clear();
  const [files] = await storage.bucket("sdk-bucket").getFiles({ prefix: "auto/" });
  assert.deepEqual(
    files.map((f) => f.name),
    names,
  );
  assert.equal(emu.requests.count("GET object.list"), 3);
  assert.equal(
    files[7]!.metadata.size,
    String(Buffer.byteLength(names[7]!)),
    "size is a JSON string, as the SDK expects",
  );
});

test("the SDK's CRC32C validation is active: corrupted bytes under true hashes are rejected", async () => {
  const bucket = storage.bucket("sdk-bucket");
  emu.faults = { ...noFaults, corruptRate: 1 };
  try {
    await assert.rejects(
      bucket.file("up/resumable.bin").download(),
      (e: { code?: string }) => e.code === "CONTENT_DOWNLOAD_MISMATCH",
    );
  } finally {
    emu.faults = { ...noFaults };
  }
});

test("IAM read/write with etags; a stale etag is rejected with 412", async () => {
  const bucket = storage.bucket("sdk-bucket");
  const [policy] = await bucket.iam.getPolicy({ requestedPolicyVersion: 3 });
  const member = "serviceAccount:service-38125765871@gcp-sa-healthcare.iam.gserviceaccount.com";
  const [updated] = await bucket.iam.setPolicy({
    ...policy,
    bindings: [...policy.bindings, { role: "roles/storage.objectAdmin", members: [member] }],
  });
  assert.notEqual(updated.etag, policy.etag);
  assert.ok(
    emu.store
      .getPolicy("sdk-bucket")!
      .bindings.some((b) => b.role === "roles/storage.objectAdmin" && b.members.includes(member)),
  );
  await assert.rejects(bucket.iam.setPolicy(policy), (e: { code?: number }) => e.code === 412);
  const [perms] = await bucket.iam.testPermissions(["storage.objects.get"]);
  assert.equal(perms["storage.objects.get"], true);
});
