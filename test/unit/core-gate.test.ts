import { test } from "node:test";
import assert from "node:assert/strict";
import { Gate } from "../../src/core/gate.ts";

test("Gate: never more than `limit` tasks at once across callers, and every task runs", async () => {
  const gate = new Gate(3);
  let running = 0;
  let peak = 0;
  const done: number[] = [];
  await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      gate.run(async () => {
        running++;
        peak = Math.max(peak, running);
        assert.equal(gate.inUse, running);
        await new Promise((r) => setTimeout(r, 1 + (i % 3)));
        running--;
        done.push(i);
      }),
    ),
  );
  assert.equal(peak, 3);
  assert.equal(done.length, 20);
  assert.equal(gate.inUse, 0);
});

test("Gate: waiters are admitted in arrival order, each as a permit comes free", async () => {
  const gate = new Gate(1);
  const started: number[] = [];
  let release!: () => void;
  const first = gate.run(async () => {
    started.push(0);
    await new Promise<void>((r) => (release = r));
  });
  const rest = [1, 2, 3].map((i) => gate.run(async () => void started.push(i)));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, [0], "the others wait for the permit");
  release();
  await Promise.all([first, ...rest]);
  assert.deepEqual(started, [0, 1, 2, 3]);
});

test("Gate: a failing task frees its permit", async () => {
  const gate = new Gate(1);
  await assert.rejects(
    gate.run(async () => {
      throw new Error("boom");
    }),
    /boom/,
  );
  assert.equal(gate.inUse, 0);
  assert.equal(await gate.run(async () => 7), 7);
});
