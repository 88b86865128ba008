/**
 * A stage thread (stage-pool.ts): verifies and writes each small object it is handed into a temp
 * file, with synchronous syscalls, and answers with the staged file or the error as data. It names
 * temp files with the spawning process's writer id, so sweeps and session checks treat them as
 * that process's own.
 */
import { parentPort, workerData } from "node:worker_threads";
import { stageBufferSync } from "./atomic-file.ts";
import { DirectoryGuard } from "./directory-guard.ts";
import { adoptWriterIdentity } from "./temp-names.ts";
import { serializeError, type StageReply, type StageRequest, type StageThreadData } from "./stage-pool.ts";

const data = workerData as StageThreadData;
adoptWriterIdentity(data.writerId, data.counterBase);

/** One guard per destination root (a run writes into one), remembering the directories it made. */
let guard: DirectoryGuard | undefined;
let guardFor: string | undefined;

parentPort!.on("message", (m: StageRequest) => {
  let reply: StageReply;
  try {
    if (guard === undefined || guardFor !== m.root) {
      guard = new DirectoryGuard(m.root);
      guardFor = m.root;
    }
    const bytes = new Uint8Array(m.buffer, m.offset, m.length);
    reply = {
      id: m.id,
      buffer: m.buffer,
      // A stage thread may wait for the disk: direct I/O where it applies.
      staged: stageBufferSync(m.root, m.relName, m.name, bytes, m.expected, guard, true),
    };
  } catch (err) {
    reply = { id: m.id, buffer: m.buffer, error: serializeError(err) };
  }
  // The buffer goes back with the answer, for the next object.
  parentPort!.postMessage(reply, [m.buffer]);
});
