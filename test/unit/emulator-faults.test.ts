import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { decideFault, mergeFaults, seededRandom, faultsApply } from "../../src/emulator/faults.ts";
import { noFaults } from "../../src/emulator/types.ts";

describe("faults", () => {
  test("off by default: nothing ever happens", () => {
    const r = seededRandom(7);
    for (let i = 0; i < 1000; i++) assert.equal(decideFault(noFaults, r, true).kind, "none");
  });
  test("rates are honoured and reproducible from a seed", () => {
    const cfg = { ...noFaults, rate503: 0.05, rate429: 0.05, resetRate: 0.02, truncateRate: 0.01, corruptRate: 0.01 };
    const count = (seed: number) => {
      const r = seededRandom(seed);
      const c: Record<string, number> = {};
      for (let i = 0; i < 20_000; i++) {
        const d = decideFault(cfg, r, true);
        const k = d.kind === "status" ? String(d.status) : d.kind;
        c[k] = (c[k] ?? 0) + 1;
      }
      return c;
    };
    const a = count(42);
    assert.deepEqual(a, count(42));
    assert.ok(Math.abs(a["503"]! / 20_000 - 0.05) < 0.01, JSON.stringify(a));
    assert.ok(Math.abs(a["reset"]! / 20_000 - 0.02) < 0.006, JSON.stringify(a));
    assert.ok(Math.abs(a["corrupt"]! / 20_000 - 0.01) < 0.005, JSON.stringify(a));
  });
  test("body faults only where there is a body; Retry-After when configured", () => {
    const r = seededRandom(1);
    assert.equal(decideFault({ ...noFaults, resetRate: 1 }, r, false).kind, "none");
    assert.deepEqual(decideFault({ ...noFaults, rate429: 1, retryAfterSeconds: 2 }, r, false), {
      kind: "status",
      status: 429,
      retryAfterSeconds: 2,
    });
  });
  test("admin paths never get faults; pathFilter narrows", () => {
    assert.equal(faultsApply({ ...noFaults, pathFilter: "" }, "/_emulator/faults"), false);
    assert.equal(faultsApply({ ...noFaults, pathFilter: "/download/" }, "/storage/v1/b"), false);
    assert.equal(faultsApply({ ...noFaults, pathFilter: "/download/" }, "/download/storage/v1/b/x/o/y"), true);
  });
  test("mergeFaults validates every field", () => {
    const { errors } = mergeFaults(noFaults, { rate503: 2, bogus: 1, latencyMs: -1 });
    assert.equal(errors.length, 3);
    assert.equal(mergeFaults(noFaults, { rate503: 0.5 }).config.rate503, 0.5);
  });
});
