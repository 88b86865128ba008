import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { redactSecrets } from "../../src/core/redact.ts";
import { insecureEndpoints, isLoopbackHost, mayCarryGoogleCredentials } from "../../src/gcp/credential-destination.ts";
import { resolveEndpoints } from "../../src/gcp/endpoints.ts";
import { UsageError } from "../../src/core/errors.ts";
import { credentialError, preventMetadataProbe } from "../../src/gcp/auth.ts";

describe("mayCarryGoogleCredentials: where a Google token may go", () => {
  const configured = ["https://healthcare.googleapis.com", "https://proxy.example.com:8443", "http://127.0.0.1:9000"];
  const cases: Array<[string, boolean, string]> = [
    ["https://storage.googleapis.com/download/storage/v1/b/b/o/x?alt=media", true, "Google API host over https"],
    ["https://storage.googleapis.com:443/x", true, "explicit default port is the same origin"],
    ["https://STORAGE.GoogleAPIs.com/x", true, "host names are case-insensitive"],
    ["https://googleapis.com/x", true, "the apex"],
    ["http://storage.googleapis.com/x", false, "plain http to a Google host (finding 3)"],
    ["http://storage.googleapis.com:443/x", false, "http on port 443 is still clear text"],
    ["https://storage.googleapis.com:8443/x", false, "a Google host on another port"],
    ["https://storage.googleapis.com./x", false, "a trailing-dot spelling is not accepted"],
    ["https://evilgoogleapis.com/x", false, "a look-alike suffix"],
    ["https://storage.googleapis.com.evil.com/x", false, "Google's name as a subdomain of another host"],
    ["https://user:pw@storage.googleapis.com/x", false, "userinfo in the URL"],
    ["https://proxy.example.com:8443/v1/x", true, "exact origin of a configured endpoint"],
    ["https://proxy.example.com/v1/x", false, "configured host, other port"],
    ["http://proxy.example.com:8443/v1/x", false, "configured host and port, other scheme"],
    ["http://127.0.0.1:9000/files/a.csv", true, "a configured loopback endpoint"],
    ["http://127.0.0.1:9001/files/a.csv", false, "loopback, but another port"],
    ["http://localhost:9000/files/a.csv", false, "another spelling of the host is another origin"],
    ["https://example.org/annotations.csv", false, "an arbitrary https host"],
    ["data:text/plain,hello", false, "data: URL"],
    ["file:///etc/passwd", false, "file: URL"],
    ["not a url", false, "garbage"],
  ];
  for (const [url, expected, why] of cases)
    test(`${expected ? "yes" : "no "} ${url} (${why})`, () => {
      assert.equal(mayCarryGoogleCredentials(url, configured), expected);
    });
  test("default ports are normalised on configured endpoints too", () => {
    assert.equal(mayCarryGoogleCredentials("https://h.example:443/x", ["https://h.example"]), true);
    assert.equal(mayCarryGoogleCredentials("http://h.example/x", ["http://h.example:80"]), true);
  });
});

describe("loopback and clear-text endpoints", () => {
  const loopback: Array<[string, boolean]> = [
    ["127.0.0.1", true],
    ["127.9.8.7", true],
    ["localhost", true],
    ["[::1]", true],
    [new URL("http://[::ffff:127.0.0.1]/").hostname, true],
    [new URL("http://2130706433/").hostname, true],
    ["0.0.0.0", false],
    ["[::]", false],
    ["emulator", false],
    ["10.0.0.5", false],
    ["localhost.example.com", false],
  ];
  for (const [host, expected] of loopback)
    test(`isLoopbackHost(${host}) = ${expected}`, () => assert.equal(isLoopbackHost(host), expected));
  test("insecureEndpoints lists plain-http non-loopback origins once", () => {
    assert.deepEqual(
      insecureEndpoints([
        "http://emulator:8080",
        "http://emulator:8080/",
        "https://healthcare.googleapis.com",
        "http://127.0.0.1:9",
        "http://0.0.0.0:5",
      ]),
      ["http://emulator:8080", "http://0.0.0.0:5"],
    );
  });
  test("--emulator turns credentials off whatever the host (finding 4)", () => {
    for (const e of ["http://0.0.0.0:8080", "http://[::ffff:127.0.0.1]:8080", "http://emulator:8080", "https://x.y"])
      assert.equal(resolveEndpoints({ emulator: e }).anonymous, true, e);
    assert.equal(resolveEndpoints({ storageEndpoint: "http://emulator:8080" }).anonymous, false);
  });
  test("an unparsable or non-http endpoint is a usage error (exit 2)", () => {
    for (const e of ["not a url", "ftp://x/", "http://"])
      assert.throws(() => resolveEndpoints({ emulator: e }), UsageError, e);
    assert.throws(() => resolveEndpoints({ storageEndpoint: "gs://b" }), UsageError);
  });
});

describe("redactSecrets", () => {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 1024 });
  const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const pemBody = pem.split("\n")[1]!;
  const refresh = "1//0gFAKE-refresh-token_abcdefghijklmnopqrstuvwxyz0123";
  const access = "ya29.a0FAKEaccessTOKEN_0123456789abcdefghij";
  const jwt =
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJhQGIuaWFtLmdzZXJ2aWNlYWNjb3VudC5jb20ifQ.c2lnbmF0dXJlLWJ5dGVz";
  const keyJson = JSON.stringify({
    type: "service_account",
    client_email: "a@b.iam.gserviceaccount.com",
    private_key_id: "0123456789abcdef0123456789abcdef01234567",
    private_key: pem,
  });
  const cases: Array<[string, string, string[], string[]]> = [
    ["PEM block with real newlines", `key:\n${pem}\nend`, [pemBody, "MII"], ["[REDACTED PRIVATE KEY]", "end"]],
    ["service-account JSON (escaped newlines)", keyJson, [pemBody, "0123456789abcdef0123456789abcdef"], ["a@b.iam"]],
    ["JSON inside a JSON string", JSON.stringify({ error: keyJson }), [pemBody, "0123456789abcdef0123"], ["a@b"]],
    [
      "a PEM block cut off by truncation",
      `echo: {"private_key":"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC`,
      ["MIIEvQ"],
      ["echo"],
    ],
    [
      "echoed token request (form body)",
      `invalid_grant: grant_type=refresh_token&refresh_token=rtoken-echoed&client_id=cid&client_secret=csecret-echoed`,
      ["rtoken-echoed", "csecret-echoed"],
      ["client_id=cid", "invalid_grant"],
    ],
    ["refresh token by shape", `token ${refresh} was revoked`, [refresh, "0gFAKE"], ["was revoked"]],
    ["URL-encoded refresh token", `got ${encodeURIComponent(refresh)} back`, ["0gFAKE"], ["got", "back"]],
    [
      "JSON refresh token, client secret, id token",
      `{"refresh_token":"r-abc","client_secret":"s-def","id_token":"${jwt}","x":1}`,
      ["r-abc", "s-def", jwt, "eyJpc3Mi"],
      ['"x":1'],
    ],
    ["a bare JWT", `assertion rejected: ${jwt}`, ["eyJpc3Mi", "c2lnbmF0dXJl"], ["assertion rejected"]],
    ["Authorization header", `headers: {Authorization: Bearer ${access}}`, [access], ["Authorization: Bearer"]],
    ["Basic auth header", `authorization=Basic dXNlcjpwYXNzd29yZA==`, ["dXNlcjpwYXNzd29yZA"], ["Basic"]],
    ["access token in a query", `GET https://h/p?access_token=${access}&alt=media`, [access], ["alt=media"]],
    ["access token by shape", `got ${access}`, [access], ["got"]],
    ["GOCSPX client secret", "secret GOCSPX-abcdefghijklmnop_qr", ["GOCSPX-abc"], ["secret"]],
  ];
  for (const [name, input, gone, kept] of cases)
    test(name, () => {
      const out = redactSecrets(input);
      for (const g of gone) assert.ok(!out.includes(g), `${JSON.stringify(g)} survived in ${out}`);
      for (const k of kept) assert.ok(out.includes(k), `${JSON.stringify(k)} was lost from ${out}`);
      assert.equal(redactSecrets(out), out, "idempotent");
    });
  test("JSON stays valid JSON after redaction", () => {
    const out = redactSecrets(JSON.stringify({ kind: "error", message: JSON.stringify({ error: keyJson }) }));
    assert.doesNotThrow(() => JSON.parse(out), out);
    assert.ok(!out.includes(pemBody));
  });
  test("ordinary messages are untouched", () => {
    for (const s of [
      "gs://b: service-1@gcp-sa-healthcare.iam.gserviceaccount.com lacks roles/storage.objectAdmin",
      "GET https://storage.googleapis.com/storage/v1/b/x/o?pageToken=abc: HTTP 404: not found",
      'malformed object listing: "nextPageToken" is number, not a string',
      "authorization failed: missing permission storage.objects.list",
    ])
      assert.equal(redactSecrets(s), s);
  });
});

describe("credentialError: one classification for every credential failure", () => {
  const enotfound = Object.assign(new Error("getaddrinfo ENOTFOUND oauth2.hcexport.invalid"), { code: "ENOTFOUND" });
  const cases: Array<[string, unknown, number, RegExp, RegExp]> = [
    [
      "no ADC",
      new Error("Could not load the default credentials. Browse to https://cloud.google.com/docs/authentication"),
      3,
      /^no Google credentials found/,
      /gcloud auth application-default login/,
    ],
    [
      "revoked refresh token",
      Object.assign(new Error("invalid_grant"), {
        response: {
          status: 400,
          data: { error: "invalid_grant", error_description: "Token has been expired or revoked." },
        },
      }),
      3,
      /refused them \(invalid_grant: Token has been expired or revoked\.\)/,
      /revoked or has expired/,
    ],
    [
      "echoed secrets in the description",
      Object.assign(new Error("x"), {
        response: {
          status: 400,
          data: { error: "invalid_request", error_description: "body: refresh_token=1%2F%2Fabc" },
        },
      }),
      3,
      /refresh_token=REDACTED/,
      /gcloud auth/,
    ],
    [
      "token endpoint does not resolve",
      enotfound,
      1,
      /cannot reach the Google token endpoint \(oauth2\.hcexport\.invalid\): ENOTFOUND/,
      /check the network/,
    ],
    ["nested in a cause", new Error("request failed", { cause: enotfound }), 1, /ENOTFOUND/, /check the network/],
    [
      "a malformed key file",
      new Error(
        "Unable to read the credential file specified by the GOOGLE_APPLICATION_CREDENTIALS environment variable: Unexpected end of JSON input",
      ),
      3,
      /^no usable Google credentials: Unable to read the credential file/,
      /GOOGLE_APPLICATION_CREDENTIALS/,
    ],
  ];
  for (const [name, err, code, message, hint] of cases)
    test(name, () => {
      const e = credentialError(err);
      assert.equal(e.exitCode, code);
      assert.match(e.message, message);
      assert.match(e.hint ?? "", hint);
    });
  test("preventMetadataProbe sets bios-only detection, but never overrides the user's choice", () => {
    const env: NodeJS.ProcessEnv = {};
    preventMetadataProbe(env);
    assert.equal(env["METADATA_SERVER_DETECTION"], "bios-only");
    const mine: NodeJS.ProcessEnv = { METADATA_SERVER_DETECTION: "ping-only" };
    preventMetadataProbe(mine);
    assert.equal(mine["METADATA_SERVER_DETECTION"], "ping-only");
    const host: NodeJS.ProcessEnv = { GCE_METADATA_HOST: "169.254.169.254" };
    preventMetadataProbe(host);
    assert.equal(host["METADATA_SERVER_DETECTION"], undefined);
  });
});
