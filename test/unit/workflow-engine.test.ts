import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Clock } from "../../src/core/clock.ts";
import { HttpError } from "../../src/core/errors.ts";
import { runWorkflow } from "../../src/workflow/engine.ts";
import { planWorkflow, Workflow, type StepContext } from "../../src/workflow/graph.ts";
import { emptyState, type RunState, type StateStore } from "../../src/workflow/state.ts";

/** A clock whose sleeps advance time at once. */
const fakeClock = (): Clock & { t: number } => {
  const c = { t: 1_700_000_000_000, now: () => c.t, sleep: async (ms: number) => void (c.t += ms) };
  return c;
};

class Killed extends Error {}

/**
 * A fake journal: what is "on disk" is the snapshot of the last completed write. With `killAt`,
 * the N-th write never lands and the process "dies": the run's signal aborts and nothing after
 * it is persisted, like a SIGKILL at that step boundary.
 */
class FakeJournal implements StateStore {
  readonly state: RunState;
  disk: RunState;
  writes = 0;
  dead = false;
  readonly killAt: number | undefined;
  readonly kill: AbortController | undefined;
  constructor(disk: RunState, killAt?: number, kill?: AbortController) {
    this.killAt = killAt;
    this.kill = kill;
    this.disk = structuredClone(disk);
    this.state = structuredClone(disk);
  }
  async update(change: (s: RunState) => void): Promise<void> {
    change(this.state);
    if (this.dead) throw new Killed("dead");
    await Promise.resolve();
    if (++this.writes === this.killAt) {
      this.dead = true;
      this.kill?.abort(new Killed("SIGKILL"));
      throw new Killed("SIGKILL");
    }
    this.disk = structuredClone(this.state);
  }
}

/** The outside world the test workflow acts on; it survives "kills". */
function world() {
  return { bucketCalls: 0, started: [] as Array<{ id: string; at: number }>, polls: 0, mirrored: 0, notes: 0 };
}

/** bucket → export (at-most-once) → wait (resumable) → mirror (every run, follows wait); notes independent. */
function testWorkflow(w: ReturnType<typeof world>, clock: Clock) {
  const wf = new Workflow();
  const bucket = wf.step(
    "bucket",
    { idempotency: "idempotent", describe: "ensure", recheckWhen: ["export:*"] },
    async () => {
      w.bucketCalls++;
      return { ok: true };
    },
  );
  const start = wf.step(
    "export:a",
    { idempotency: "at-most-once", needs: [bucket], describe: "start", input: "a" },
    async (ctx: StepContext) => {
      if (ctx.resumed) {
        const mine = w.started.find((s) => s.at >= Date.parse(ctx.startedAt));
        if (mine !== undefined) return { op: mine.id };
      }
      const id = `op${w.started.length + 1}`;
      w.started.push({ id, at: clock.now() });
      return { op: id };
    },
  );
  const wait = wf.step(
    "wait:a",
    { idempotency: "resumable", needs: [start], describe: "wait" },
    async (ctx: StepContext) => {
      assert.equal(ctx.journal()["export:a"]?.status, "done", "a dependent starts only after its need is journaled");
      w.polls++;
      return { op: ctx.get(start).op, ok: true };
    },
  );
  wf.step(
    "mirror:a",
    { idempotency: "resumable", always: true, needs: [start], follows: [wait], describe: "mirror" },
    async (ctx: StepContext) => {
      await ctx.settled(wait);
      w.mirrored++;
      return { files: 3 };
    },
  );
  wf.step("notes", { idempotency: "idempotent", describe: "notes" }, async () => {
    w.notes++;
    return { rows: 7 };
  });
  return wf;
}

const results = (s: RunState) =>
  Object.fromEntries(Object.entries(s.steps).map(([k, r]) => [k, { status: r.status, result: r.result }]));

describe("step engine: kill and replay at every step boundary", () => {
  test("a SIGKILL at any journal write, then a rerun: one export, every step done, same results", async () => {
    const clean = world();
    const cleanJournal = new FakeJournal(emptyState());
    const clock0 = fakeClock();
    const first = await runWorkflow(testWorkflow(clean, clock0), { journal: cleanJournal, clock: clock0 });
    assert.equal(first.error, undefined);
    const boundaries = cleanJournal.writes;
    assert.ok(boundaries >= 8, `${boundaries} journal writes in a clean run`);
    for (let killAt = 1; killAt <= boundaries; killAt++) {
      const w = world();
      const clock = fakeClock();
      const kill = new AbortController();
      const dying = new FakeJournal(emptyState(), killAt, kill);
      const r1 = await runWorkflow(testWorkflow(w, clock), { journal: dying, clock, signal: kill.signal });
      assert.ok(r1.error !== undefined, `kill at write ${killAt} stops the run`);
      clock.t += 1000;
      const again = new FakeJournal(dying.disk);
      const r2 = await runWorkflow(testWorkflow(w, clock), { journal: again, clock });
      assert.equal(r2.error, undefined, `rerun after kill at ${killAt}: ${String(r2.error)}`);
      assert.equal(w.started.length, 1, `kill at write ${killAt}: exactly one export started`);
      assert.deepEqual(results(again.disk), results(cleanJournal.disk), `kill at write ${killAt}: same journal`);
      assert.ok(w.bucketCalls <= 2 && w.notes <= 2, "idempotent steps are at most redone");
    }
  });

  test("a finished run replays everything but the every-run step; the plan says so (pure)", async () => {
    const w = world();
    const clock = fakeClock();
    const j = new FakeJournal(emptyState());
    await runWorkflow(testWorkflow(w, clock), { journal: j, clock });
    const before = structuredClone(j.state);
    const plan = planWorkflow(testWorkflow(w, clock), j.state.steps);
    assert.deepEqual(j.state, before, "planning changes nothing");
    assert.deepEqual(
      plan.map((p) => `${p.key}:${p.action}`),
      ["bucket:skip", "export:a:skip", "wait:a:skip", "mirror:a:run", "notes:skip"],
    );
    await runWorkflow(testWorkflow(w, clock), { journal: j, clock });
    assert.deepEqual([w.bucketCalls, w.started.length, w.polls, w.mirrored, w.notes], [1, 1, 1, 2, 1]);
    // Redoing the export re-verifies the bucket (a precondition) and re-runs its dependents.
    const redo = planWorkflow(testWorkflow(w, clock), j.state.steps, { redo: (k) => k.startsWith("export:") });
    assert.deepEqual(
      redo.map((p) => `${p.key}:${p.action}`),
      ["bucket:recheck", "export:a:run", "wait:a:run", "mirror:a:run", "notes:skip"],
    );
  });
});

describe("step engine: scheduling, failures, options", () => {
  test("independent steps run concurrently; a failure blocks only its dependents", async () => {
    const wf = new Workflow();
    const log: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow = wf.step("slow", { idempotency: "idempotent", describe: "" }, async () => {
      log.push("slow:start");
      await gate;
      log.push("slow:end");
      return 1;
    });
    const bad = wf.step("bad", { idempotency: "idempotent", describe: "" }, async () => {
      log.push("bad");
      release();
      throw new Error("boom");
    });
    wf.step("after-bad", { idempotency: "idempotent", needs: [bad], describe: "" }, async () => {
      log.push("after-bad");
      return 1;
    });
    wf.step("after-slow", { idempotency: "idempotent", needs: [slow], describe: "" }, async () => {
      log.push("after-slow");
      return 2;
    });
    const r = await runWorkflow(wf, { journal: new FakeJournal(emptyState()) });
    assert.deepEqual(log, ["slow:start", "bad", "slow:end", "after-slow"], "bad ran while slow was running");
    assert.match(String(r.error), /boom/);
    assert.deepEqual(r.outcomes.get("after-bad"), { status: "blocked", by: "bad" });
    assert.equal(r.outcomes.get("after-slow")?.status, "done");
  });

  test("retry policy (idempotent only), timeout, terminal failure, input change, stillValid", async () => {
    const clock = fakeClock();
    const wf = new Workflow();
    let tries = 0;
    wf.step(
      "flaky",
      {
        idempotency: "idempotent",
        describe: "",
        retry: { retries: 3, backoff: { initialMs: 100, maxMs: 100, multiplier: 1, jitter: "none" } },
      },
      async () => {
        if (++tries < 3) throw new HttpError({ status: 503, method: "GET", url: "u", message: "busy" });
        return tries;
      },
    );
    wf.step("stuck", { idempotency: "resumable", describe: "", timeoutMs: 5000 }, (ctx: StepContext) => {
      return new Promise((_, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)));
    });
    const j = new FakeJournal(emptyState());
    const r = await runWorkflow(wf, { journal: j, clock });
    assert.equal(r.outcomes.get("flaky")?.status, "done");
    assert.equal(tries, 3);
    assert.match(String((r.outcomes.get("stuck") as { error: unknown }).error), /timed out after 5000 ms/);
    assert.equal(j.disk.steps["stuck"]?.status, "started", "a non-terminal failure stays resumable");
    assert.throws(
      () =>
        new Workflow().step(
          "x",
          {
            idempotency: "at-most-once",
            describe: "",
            retry: { retries: 1, backoff: { initialMs: 1, maxMs: 1, multiplier: 1, jitter: "none" } },
          },
          async () => 1,
        ),
      /only idempotent steps are retried/,
    );

    // A terminal failure of the consumer spends the at-most-once result: the rerun starts again.
    const w = { starts: 0, fail: true, valid: true };
    const mk = (input: string) => {
      const g = new Workflow();
      const s = g.step(
        "export:x",
        { idempotency: "at-most-once", describe: "", input, stillValid: async () => w.valid },
        async () => ++w.starts,
      );
      g.step("wait:x", { idempotency: "resumable", needs: [s], describe: "", terminal: () => true }, async () => {
        if (w.fail) throw new Error("operation failed");
        return "ok";
      });
      return g;
    };
    const jj = new FakeJournal(emptyState());
    await runWorkflow(mk("a"), { journal: jj });
    assert.equal(jj.disk.steps["wait:x"]?.status, "failed");
    w.fail = false;
    await runWorkflow(mk("a"), { journal: jj });
    assert.equal(w.starts, 2, "the export is started again after its operation failed");
    await runWorkflow(mk("a"), { journal: jj });
    assert.equal(w.starts, 2, "done and valid: replayed");
    await runWorkflow(mk("b"), { journal: jj });
    assert.equal(w.starts, 3, "another input: run again");
    jj.state.steps["wait:x"]!.status = "started";
    w.valid = false;
    await runWorkflow(mk("b"), { journal: jj });
    assert.equal(w.starts, 4, "a recorded result that no longer holds (expired operation) is replaced");
  });
});
