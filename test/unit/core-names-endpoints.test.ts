import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  checkBucketName,
  parseGsUri,
  parseOperationName,
  parseStoreName,
  serviceAgentFor,
  storePath,
} from "../../src/core/resource-names.ts";
import { resolveEndpoints, GOOGLE_ENDPOINTS } from "../../src/gcp/endpoints.ts";
import { redactUrl, withQuery, errorFromResponse } from "../../src/net/http-client.ts";
import { crc32cBase64 } from "../../src/core/hashing.ts";

describe("bucket names", () => {
  test("accepts valid names", () => {
    for (const n of ["my-siim-bucket-dicom", "a_b", "abc", "a.b.c", "x".repeat(63)])
      assert.equal(checkBucketName(n), undefined, n);
  });
  test("rejects invalid names with a reason", () => {
    for (const n of [
      "ab",
      "My-Bucket",
      "-abc",
      "abc-",
      "x".repeat(64),
      "192.168.1.1",
      "goog-x",
      "my-google-bucket",
      "a..b",
      "a b",
    ]) {
      assert.match(checkBucketName(n) ?? "", /bucket name/, n);
    }
  });
});

describe("gs:// URIs", () => {
  test("parse bucket and prefix", () => {
    assert.deepEqual(parseGsUri("gs://b-1/train/"), { ok: true, value: { bucket: "b-1", prefix: "train" } });
    assert.deepEqual(parseGsUri("gs://b-1"), { ok: true, value: { bucket: "b-1", prefix: "" } });
    assert.equal(parseGsUri("s3://x/y").ok, false);
    assert.equal(parseGsUri("gs://Bad/x").ok, false);
    assert.equal(parseGsUri("gs://good/a//b").ok, false);
  });
});

describe("Healthcare names", () => {
  const train =
    "projects/kaggle-siim-healthcare/locations/us-central1/datasets/siim-pneumothorax/dicomStores/dicom-images-train";
  test("store names round-trip", () => {
    const r = parseStoreName(train, "dicomStores");
    assert.equal(r.ok, true);
    if (r.ok) assert.equal(storePath(r.value), train);
    assert.equal(parseStoreName(train, "fhirStores").ok, false);
    assert.equal(parseStoreName("projects/p/datasets/d").ok, false);
  });
  test("operation names", () => {
    const r = parseOperationName(
      "projects/kaggle-siim-healthcare/locations/us-central1/datasets/siim-pneumothorax/operations/123",
    );
    assert.equal(r.ok && r.value.id, "123");
  });
  test("service agent", () => {
    assert.equal(serviceAgentFor("38125765871"), "service-38125765871@gcp-sa-healthcare.iam.gserviceaccount.com");
  });
});

describe("resolveEndpoints", () => {
  test("defaults to Google with credentials", () => {
    assert.deepEqual(resolveEndpoints({}), GOOGLE_ENDPOINTS);
  });
  test("an emulator URL sets all three and turns auth off", () => {
    const e = resolveEndpoints({ emulator: "http://127.0.0.1:9999/" });
    assert.deepEqual(e, {
      storage: "http://127.0.0.1:9999",
      healthcare: "http://127.0.0.1:9999",
      resourceManager: "http://127.0.0.1:9999",
      anonymous: true,
    });
  });
  test("flags beat STORAGE_EMULATOR_HOST which beats the config file", () => {
    const env = { STORAGE_EMULATOR_HOST: "localhost:4443" };
    assert.equal(resolveEndpoints({ config: { storage: "http://127.0.0.1:1" } }, env).storage, "http://localhost:4443");
    assert.equal(
      resolveEndpoints(
        { storageEndpoint: "http://127.0.0.1:2/storage/v1/", config: { storage: "http://127.0.0.1:1" } },
        env,
      ).storage,
      "http://127.0.0.1:2",
    );
    assert.equal(
      resolveEndpoints({ storageEndpoint: "http://127.0.0.1:2" }, env).anonymous,
      false,
      "healthcare still points at Google",
    );
  });
});

describe("HTTP helpers", () => {
  test("redactUrl masks credentials in userinfo and query", () => {
    const r = redactUrl("https://user:secret@h/p?access_token=ya29.abc&x=1&key=AIza");
    assert.doesNotMatch(r, /secret|ya29|AIza/);
    assert.match(r, /x=1/);
  });
  test("withQuery repeats arrays and skips undefined", () => {
    assert.equal(withQuery("http://h/p", { a: ["1", "2"], b: undefined, c: 3 }).search, "?a=1&a=2&c=3");
  });
  test("errorFromResponse reads Google's envelope and Retry-After", () => {
    const e = errorFromResponse(
      "GET",
      new URL("http://h/x"),
      429,
      { "retry-after": "3" },
      JSON.stringify({ error: { code: 429, message: "slow down", errors: [{ reason: "rateLimitExceeded" }] } }),
      0,
    );
    assert.equal(e.status, 429);
    assert.equal(e.reason, "rateLimitExceeded");
    assert.equal(e.retryAfterMs, 3000);
    assert.match(e.message, /slow down/);
  });
});

describe("crc32c", () => {
  test("matches the GCS encoding of the standard check value", () => {
    // CRC32C("123456789") = 0xE3069283
    assert.equal(crc32cBase64(Buffer.from("123456789")), Buffer.from([0xe3, 0x06, 0x92, 0x83]).toString("base64"));
  });
});
