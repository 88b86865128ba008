import { test } from "node:test";
import assert from "node:assert/strict";
import { judgeLock, type LockHolder, type ProcessProbe } from "../../src/workflow/lock-judge.ts";
import { stateIn } from "../../src/core/process-alive.ts";
import { startTimeIn, systemProbe } from "../../src/workflow/process-identity.ts";
import { withZombie } from "../support/zombie.ts";

const BOOT = "0b5f3c1e-boot";
const NS = "pid:[4026531836]";
const me: LockHolder = { pid: 4242, host: "node-1", bootId: BOOT, pidNs: NS, startTime: "900" };
/** A process table of our namespace: pid → start time. */
const table = (procs: Record<number, string>): ProcessProbe => ({
  isAlive: (pid) => procs[pid] !== undefined,
  startTimeOf: (pid) => procs[pid],
});
const T0 = Date.parse("2026-12-01T12:00:00Z");
const at = (ageMs: number) => ({ now: T0, heartbeatMs: T0 - ageMs, staleAfterMs: 120_000 });

test("same host, boot and namespace: a dead pid, or a pid now owned by a newer process, is stale", () => {
  const holder = { ...me, pid: 77, startTime: "500" };
  assert.equal(judgeLock(holder, me, table({ 77: "500" }), at(0)).stale, false);
  const dead = judgeLock(holder, me, table({}), at(0));
  assert.deepEqual(dead, { stale: true, reason: "pid 77 on node-1 is not running" });
  const reused = judgeLock(holder, me, table({ 77: "800" }), at(0));
  assert.equal(reused.stale, true);
  assert.match(reused.reason, /newer process/);
  // A fresh heartbeat does not save a provably dead holder; an old one does not condemn a live one.
  assert.equal(judgeLock(holder, me, table({}), at(1000)).stale, true);
  assert.equal(judgeLock(holder, me, table({ 77: "500" }), at(3_600_000)).stale, false);
  // Start time unreadable (a /proc of another namespace): the pid alone decides.
  assert.equal(judgeLock(holder, me, { isAlive: () => true, startTimeOf: () => undefined }, at(0)).stale, false);
});

test("finding 7a: our own pid is not us unless it has our start time", () => {
  const restarted = { ...me, startTime: "120" }; // pid 4242 before a restart of this container
  const v = judgeLock(restarted, me, table({ 4242: "900" }), at(0));
  assert.equal(v.stale, true);
  assert.match(v.reason, /had our pid/);
  // The same process taking the lock twice (same pid, same start time) is a live holder.
  assert.equal(judgeLock({ ...me }, me, table({ 4242: "900" }), at(0)).stale, false);
  // A new pid namespace on the same machine (a restarted container: same hostname, pid 1 again).
  const old = { ...me, pid: 1, pidNs: "pid:[4026532001]", startTime: "300" };
  const ctr = { ...me, pid: 1, pidNs: "pid:[4026532999]", startTime: "700" };
  const w = judgeLock(old, ctr, table({}), at(0));
  assert.equal(w.stale, true);
  assert.match(w.reason, /another pid namespace of this machine/);
});

test("finding 7b: another host or namespace is judged by its heartbeat alone (fake clock)", () => {
  const pod = { pid: 1, host: "cron-28712", bootId: "other-boot", pidNs: "pid:[4026532111]", startTime: "50" };
  const self = { ...me, pid: 1, host: "cron-28713", startTime: "60" };
  const probe = table({ 1: "60" }); // our own pid 1: must not be consulted for a foreign holder
  assert.equal(judgeLock(pod, self, probe, at(0)).stale, false);
  assert.equal(judgeLock(pod, self, probe, at(119_000)).stale, false);
  const v = judgeLock(pod, self, probe, at(121_000));
  assert.equal(v.stale, true);
  assert.match(v.reason, /cron-28712 \(another host\) has not refreshed the lock for 121 s \(more than 120 s\)/);
  // Same host name, another boot (or a machine with the same name): the pid there means nothing here.
  const rebooted = { ...me, bootId: "before-reboot", pid: 77 };
  assert.equal(judgeLock(rebooted, me, table({ 77: "1" }), at(10_000)).stale, false);
  assert.equal(judgeLock(rebooted, me, table({ 77: "1" }), at(200_000)).stale, true);
  // Same host and boot, another namespace, another pid: we cannot look in, the heartbeat decides.
  const sibling = { ...me, pid: 9, pidNs: "pid:[4026532002]" };
  assert.equal(judgeLock(sibling, me, table({}), at(5_000)).stale, false);
  assert.equal(judgeLock(sibling, me, table({}), at(130_000)).stale, true);
});

test("locks of older versions (no identity fields) and unreadable ones", () => {
  const legacy = { pid: 77, host: "node-1" };
  assert.equal(judgeLock(legacy, me, table({ 77: "5" }), at(0)).stale, false);
  assert.equal(judgeLock(legacy, me, table({}), at(0)).stale, true);
  assert.equal(judgeLock({ pid: me.pid, host: "node-1" }, me, table({ 4242: "900" }), at(0)).stale, true);
  assert.equal(judgeLock({ pid: 77, host: "elsewhere" }, me, table({}), at(1000)).stale, false);
  assert.equal(judgeLock(undefined, me, table({}), at(0)).stale, true);
});

test("startTimeIn reads field 22 even when the command name holds spaces and parentheses", () => {
  const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
  fields[0] = "S";
  fields[22 - 3] = "123456";
  assert.equal(startTimeIn(`1 (node (x) y) ${fields.join(" ")}`), "123456");
  assert.equal(startTimeIn("garbage"), undefined);
});

test("a zombie holder (exited, not reaped: tmux, a container's init) is not alive; a sleeping one is", async () => {
  assert.equal(stateIn("12 (a (b) c) Z 1 12 12 0"), "Z");
  await withZombie((zombie, parent) => {
    assert.equal(systemProbe.isAlive(zombie), false, `pid ${zombie} is a zombie`);
    assert.equal(systemProbe.isAlive(parent), true, "its sleeping parent is alive");
  });
});
