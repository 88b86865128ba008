import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { arrayElements, parseRows } from "../../src/dicomweb/json-rows.ts";
import { dicomwebSource } from "../../src/dicomweb/client.ts";
import { HttpClient } from "../../src/net/http-client.ts";
import { defaultRetryPolicy } from "../../src/core/retry.ts";
import { prng } from "../support/chaos.ts";

/** Strings made of what a splitter could trip on: quotes, backslashes, brackets, commas, escapes. */
const NASTY = ['"', "\\", "[", "]", "{", "}", ",", ":", " ", "\n", "\u2028", "é", "\ud83d\ude00", "a", "0"];

function value(r: () => number, depth: number): unknown {
  const k = Math.floor(r() * (depth > 3 ? 5 : 8));
  if (k === 0) return null;
  if (k === 1) return r() < 0.5;
  if (k === 2) return Math.round((r() - 0.5) * 1e6) / 100;
  if (k <= 4) return Array.from({ length: Math.floor(r() * 6) }, () => NASTY[Math.floor(r() * NASTY.length)]).join("");
  if (k === 5) return Array.from({ length: Math.floor(r() * 4) }, () => value(r, depth + 1));
  const o: Record<string, unknown> = {};
  for (let i = Math.floor(r() * 4); i > 0; i--) o[String(value(r, 9))] = value(r, depth + 1);
  return o;
}

/** `JSON.stringify` with random whitespace wherever JSON allows it (outside strings). */
function spaced(v: unknown, r: () => number): string {
  const ws = () => [" ", "\t", "\n", "\r\n", ""][Math.floor(r() * 5)]!;
  if (Array.isArray(v)) return `[${ws()}${v.map((x) => `${ws()}${spaced(x, r)}${ws()}`).join(",")}${ws()}]`;
  if (v !== null && typeof v === "object")
    return `{${Object.entries(v)
      .map(([k, x]) => `${ws()}${JSON.stringify(k)}${ws()}:${ws()}${spaced(x, r)}${ws()}`)
      .join(",")}${ws()}}`;
  return JSON.stringify(v);
}

/** What parseRows must equal: JSON.parse of the whole text, each object row cut to `keep`. */
function expected(text: string, keep: readonly string[]): unknown {
  const all = JSON.parse(text) as unknown;
  if (!Array.isArray(all)) return all;
  return all.map((row: unknown) =>
    typeof row === "object" && row !== null && !Array.isArray(row)
      ? Object.fromEntries(
          keep.filter((k) => Object.hasOwn(row, k)).map((k) => [k, (row as Record<string, unknown>)[k]]),
        )
      : row,
  );
}

/** parseRows throws exactly when JSON.parse does (a SyntaxError), else gives the same rows. */
function agrees(text: string, keep: readonly string[], why: string): void {
  let want: unknown;
  try {
    want = expected(text, keep);
  } catch (err) {
    assert.ok(err instanceof SyntaxError);
    assert.throws(() => parseRows(text, keep), SyntaxError, `${why}: JSON.parse refuses ${JSON.stringify(text)}`);
    return;
  }
  assert.deepEqual(parseRows(text, keep), want, `${why}: ${JSON.stringify(text)}`);
}

describe("parseRows: a JSON array a row at a time", () => {
  it("splits random arrays of nasty values (strings of quotes, escapes, brackets) exactly where JSON does", () => {
    for (let seed = 1; seed <= 400; seed++) {
      const r = prng(seed);
      const rows = Array.from({ length: Math.floor(r() * 8) }, () => value(r, 0));
      const text = `${[" ", "\n", ""][seed % 3]}${spaced(rows, r)}${["", "\r\n", "  "][seed % 3]}`;
      const at = arrayElements(text);
      assert.ok(at !== undefined, `seed ${seed}: ${JSON.stringify(text)}`);
      assert.deepEqual(
        at.map(([s, e]) => JSON.parse(text.slice(s, e)) as unknown),
        JSON.parse(text),
        `seed ${seed}`,
      );
      agrees(text, ["a", "0", '"', "\\"], `seed ${seed}`);
    }
  });

  it("refuses what JSON.parse refuses, and returns what it returns for anything that is not an array", () => {
    const cases = [
      "[]",
      " [ ] ",
      "[1,,2]",
      "[1,]",
      "[,1]",
      "[1 2]",
      '[{"a":1}}]',
      '[{"a":1}',
      '["a]',
      '["a\\"]',
      '["a\\\\"]',
      "[1]x",
      "x[1]",
      "[1]]",
      "[[]",
      "[[1},{2]]",
      '[{"a":[1}]]',
      '["\u0001"]',
      "{}",
      '{"0020000D":{"Value":["1.2"]}}',
      '"[1]"',
      "null",
      "[",
      "]",
      "",
      " ",
      '[{"__proto__":{"x":1},"a":2}]',
    ];
    for (const c of cases) agrees(c, ["a", "0020000D"], "case");
  });

  it("agrees with JSON.parse on thousands of random corruptions of valid pages", () => {
    const alphabet = ["[", "]", "{", "}", ",", '"', ":", " ", "\\", "1", "a"];
    for (let seed = 1; seed <= 3000; seed++) {
      const r = prng(seed * 7919);
      const rows = Array.from({ length: 1 + Math.floor(r() * 4) }, () => value(r, 2));
      let text = spaced(rows, r);
      for (let m = 1 + Math.floor(r() * 2); m > 0; m--) {
        const at = Math.floor(r() * (text.length + 1));
        const ch = alphabet[Math.floor(r() * alphabet.length)]!;
        text = r() < 0.5 ? text.slice(0, at) + ch + text.slice(at) : text.slice(0, at) + text.slice(at + 1);
      }
      agrees(text, ["a", "0"], `seed ${seed}`);
    }
  });

  it("keeps of each object row only the attributes asked for; other rows as they are", () => {
    const text = JSON.stringify([
      { "0020000D": { vr: "UI", Value: ["1.2"] }, "00100010": { vr: "PN", Value: [{ Alphabetic: "x" }] } },
      "not a row",
      [1],
      { "00080018": { vr: "UI", Value: ["3.4"] } },
    ]);
    assert.deepEqual(parseRows(text, ["0020000D", "00080018"]), [
      { "0020000D": { vr: "UI", Value: ["1.2"] } },
      "not a row",
      [1],
      { "00080018": { vr: "UI", Value: ["3.4"] } },
    ]);
  });
});

describe("dicomwebSource.search with keep", () => {
  it("returns the rows a real server sent cut to those attributes; without keep, whole; invalid JSON is the same error", async () => {
    const full = [
      {
        "0020000D": { vr: "UI", Value: ["1.2.3"] },
        "0020000E": { vr: "UI", Value: ["1.2.3.4"] },
        "00080018": { vr: "UI", Value: ["1.2.3.4.5"] },
        "00100010": { vr: "PN", Value: [{ Alphabetic: "Doe^Jane" }] },
        "00081030": { vr: "LO", Value: ['a "study", [with] {brackets}'] },
      },
    ];
    let body = JSON.stringify(full, null, 2);
    const seen: string[] = [];
    const server = createServer((req, res) => {
      seen.push(req.url ?? "");
      res.writeHead(200, { "content-type": "application/dicom+json" });
      res.end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const client = new HttpClient({ retry: { ...defaultRetryPolicy, retries: 0 } });
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dicomWeb`;
      const source = dicomwebSource(client, base);
      const keep = ["0020000D", "0020000E", "00080018"];
      assert.deepEqual(await source.search("instances", { limit: 5 }, undefined, keep), [
        { "0020000D": full[0]!["0020000D"], "0020000E": full[0]!["0020000E"], "00080018": full[0]!["00080018"] },
      ]);
      assert.deepEqual(await source.search("instances", { limit: 5 }), full);
      assert.deepEqual(seen, ["/dicomWeb/instances?limit=5", "/dicomWeb/instances?limit=5"]);
      body = `${body.slice(0, -1)},]`;
      const whole = await source.search("instances", {}).then(
        () => "resolved",
        (e: Error) => e.message,
      );
      const kept = await source.search("instances", {}, undefined, keep).then(
        () => "resolved",
        (e: Error) => e.message,
      );
      assert.match(whole, /response is not JSON/);
      assert.equal(kept, whole);
    } finally {
      await client.close();
      server.close();
    }
  });
});
