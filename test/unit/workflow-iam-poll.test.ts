import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { EXPORT_ROLE, hasExportRole, withMemberInRole, type Policy } from "../../src/workflow/iam-policy.ts";
import { ensureExportRole } from "../../src/pipeline/steps.ts";
import { pollOperation, type OperationEvent } from "../../src/workflow/poll-operation.ts";
import { PermissionError, OperationFailedError, HttpError } from "../../src/core/errors.ts";
import type { BucketAdmin } from "../../src/gcp/storage-admin.ts";
import type { Operation } from "../../src/gcp/healthcare.ts";
import type { Clock } from "../../src/core/clock.ts";

const AGENT = "service-38125765871@gcp-sa-healthcare.iam.gserviceaccount.com";
const MEMBER = `serviceAccount:${AGENT}`;
const conditional = {
  role: EXPORT_ROLE,
  members: ["user:x@example.com"],
  condition: { title: "only x/", expression: 'resource.name.startsWith("projects/_/buckets/b/objects/x/")' },
};
const base: Policy = {
  etag: "CAE=",
  version: 3,
  bindings: [
    { role: "roles/storage.legacyBucketOwner", members: ["projectOwner:1"] },
    conditional,
    { role: "roles/storage.objectViewer", members: ["group:g@example.com"] },
  ],
};

describe("withMemberInRole", () => {
  test("adds an unconditional binding and keeps every other binding byte for byte", () => {
    const before = JSON.stringify(base);
    const { policy, changed } = withMemberInRole(base, EXPORT_ROLE, MEMBER);
    assert.equal(changed, true);
    assert.equal(JSON.stringify(base), before, "input not mutated");
    assert.deepEqual(
      policy.bindings!.slice(0, 3),
      base.bindings,
      "existing bindings untouched, conditional one included",
    );
    assert.deepEqual(policy.bindings![3], { role: EXPORT_ROLE, members: [MEMBER] });
    assert.equal(policy.etag, "CAE=", "etag kept for the conditional write");
    assert.equal(hasExportRole(policy, MEMBER), true);
  });
  test("a conditional grant does not count; an existing unconditional binding gains the member", () => {
    assert.equal(hasExportRole({ bindings: [{ ...conditional, members: [MEMBER] }] }, MEMBER), false);
    const p = withMemberInRole(
      { bindings: [{ role: EXPORT_ROLE, members: ["user:a@example.com"] }] },
      EXPORT_ROLE,
      MEMBER,
    ).policy;
    assert.deepEqual(p.bindings, [{ role: EXPORT_ROLE, members: ["user:a@example.com", MEMBER] }]);
    assert.equal(withMemberInRole(p, EXPORT_ROLE, MEMBER).changed, false);
    assert.equal(
      hasExportRole({ bindings: [{ role: "roles/storage.objectCreator", members: [MEMBER] }] }, MEMBER),
      false,
      "objectCreator is not enough",
    );
  });
});

function fakeBuckets(initial: Policy, conflicts = 0): BucketAdmin & { writes: Policy[]; current: Policy } {
  const state = { writes: [] as Policy[], current: structuredClone(initial), conflicts };
  return {
    get writes() {
      return state.writes;
    },
    get current() {
      return state.current;
    },
    ensureBucket: async () => ({ created: false }),
    getPolicy: async () => structuredClone(state.current),
    setPolicy: async (_b, p) => {
      if (state.conflicts > 0) {
        state.conflicts--;
        // someone else edited the policy meanwhile
        state.current = {
          ...state.current,
          etag: `e${state.conflicts}`,
          bindings: [
            ...state.current.bindings!,
            { role: "roles/storage.objectViewer", members: [`user:concurrent${state.conflicts}@example.com`] },
          ],
        };
        throw Object.assign(new Error("412"), { status: 412 });
      }
      if (p.etag !== state.current.etag) throw Object.assign(new Error("stale"), { status: 412 });
      state.writes.push(p);
      state.current = { ...p, etag: `${p.etag}+` };
      return state.current;
    },
  };
}

describe("ensureExportRole", () => {
  test("missing binding without grant: exit 3 naming member, role and the fix; nothing written", async () => {
    const buckets = fakeBuckets(base);
    await assert.rejects(ensureExportRole(buckets, "my-bucket", AGENT, false), (e) => {
      assert.ok(e instanceof PermissionError);
      assert.equal(e.exitCode, 3);
      assert.match(e.message, new RegExp(`${AGENT}.*lacks roles/storage.objectAdmin`));
      assert.match(e.hint ?? "", /hcexport iam grant gs:\/\/my-bucket --service-agent service-38125765871@/);
      return true;
    });
    assert.equal(buckets.writes.length, 0);
  });
  test("grant retries on 412 and keeps concurrent edits", async () => {
    const buckets = fakeBuckets(base, 2);
    assert.equal(await ensureExportRole(buckets, "b", AGENT, true), true);
    const final = buckets.current;
    assert.ok(hasExportRole(final, MEMBER));
    assert.ok(final.bindings!.some((b) => b.members?.includes("user:concurrent1@example.com")));
    assert.ok(final.bindings!.some((b) => b.members?.includes("user:concurrent0@example.com")));
    assert.deepEqual(
      final.bindings!.find((b) => b.condition !== undefined),
      conditional,
    );
    assert.equal(await ensureExportRole(buckets, "b", AGENT, false), false, "already granted: nothing to do");
  });
});

function fakeClock(): Clock & { slept: number[] } {
  let t = 0;
  const slept: number[] = [];
  return {
    slept,
    now: () => t,
    sleep: async (ms) => {
      slept.push(ms);
      t += ms;
    },
  };
}
const op = (o: Partial<Operation> & { counter?: Record<string, string> }): Operation => ({
  name: "projects/p/locations/l/datasets/d/operations/1",
  ...o,
  metadata: { logsUrl: "https://console.cloud.google.com/logs/x", counter: o.counter ?? {} },
});

describe("pollOperation", () => {
  test("capped backoff between polls; progress only when the counters change", async () => {
    const seq = [
      op({ counter: { pending: "10" } }),
      op({ counter: { pending: "10" } }),
      op({ counter: { success: "4", pending: "6" } }),
      op({ counter: { success: "4", pending: "6" } }),
      op({ done: true, response: {}, counter: { success: "10" } }),
    ];
    const clock = fakeClock();
    const events: OperationEvent[] = [];
    const done = await pollOperation(async () => seq.shift()!, "op", {
      clock,
      random: () => 1,
      backoff: { initialMs: 1000, maxMs: 2500, multiplier: 2, jitter: "none" },
      predict: false, // the backoff alone (prediction: test/unit/predict-poll.test.ts)
      onEvent: (e) => events.push(e),
    });
    assert.equal(done.done, true);
    assert.deepEqual(clock.slept, [1000, 2000, 2500, 2500]);
    assert.deepEqual(
      events.filter((e) => e.kind === "operation.progress").map((e) => (e as { success: number }).success),
      [0, 4],
    );
    assert.equal(events.at(-1)!.kind, "operation.done");
  });
  test("done with error → exit 4 with the operation's message and logs URL", async () => {
    const clock = fakeClock();
    await assert.rejects(
      pollOperation(
        async () =>
          op({
            done: true,
            error: { code: 7, message: "Healthcare API doesn't have required Cloud Storage permission." },
            counter: { failure: "5" },
          }),
        "op",
        { clock },
      ),
      (e) => {
        assert.ok(e instanceof OperationFailedError);
        assert.equal(e.exitCode, 4);
        assert.match(e.message, /code 7.*required Cloud Storage permission/);
        assert.equal(e.logsUrl, "https://console.cloud.google.com/logs/x");
        assert.match(e.hint ?? "", /iam grant/);
        return true;
      },
    );
  });
  test("done without response or error is an error; 503s while polling are retried", async () => {
    const clock = fakeClock();
    await assert.rejects(
      pollOperation(async () => op({ done: true }), "op", { clock }),
      /without a result or an error/,
    );
    let calls = 0;
    const r = await pollOperation(
      async () => {
        if (++calls < 3) throw new HttpError({ status: 503, method: "GET", url: "u", message: "busy" });
        return op({ done: true, response: {} });
      },
      "op",
      { clock },
    );
    assert.equal(r.done, true);
    assert.equal(calls, 3);
  });
  test("gives up at the deadline with a resume hint", async () => {
    const clock = fakeClock();
    await assert.rejects(
      pollOperation(async () => op({}), "op", {
        clock,
        deadlineMs: 5000,
        backoff: { initialMs: 1000, maxMs: 1000, multiplier: 1, jitter: "none" },
      }),
      (e) => {
        assert.match(String((e as Error).message), /deadline; it is still running/);
        assert.match(String((e as { hint?: string }).hint), /hcexport operations wait op/);
        return true;
      },
    );
  });
});
