import { readFile } from "node:fs/promises";
import path from "node:path";
import { replaceFileAtomic } from "../core/atomic-file.ts";
import { destinationFault, HcexportError } from "../core/errors.ts";

/** One export's progress; the operation name is saved before polling starts. */
export interface ExportState {
  readonly store: string;
  readonly uriPrefix: string;
  /** `starting`: the POST may or may not have reached the server (a crash right then). */
  status: "starting" | "running" | "done" | "failed";
  operation?: string;
  startedAt: string;
  finishedAt?: string;
  counters?: { success: number; failure: number };
  error?: string;
}

/** What `.hcexport/state.json` holds: enough to resume and to answer `status`. */
export interface RunState {
  version: 1;
  /** The Healthcare API base the checkpoints belong to; other endpoints' state is not resumed. */
  endpoint?: string;
  bucket?: { readonly name: string; done: boolean; at: string; created: boolean };
  iam?: { readonly member: string; done: boolean; at: string; granted: boolean };
  /** by prefix */
  exports: Record<string, ExportState>;
  /** by prefix */
  mirrors: Record<
    string,
    {
      at: string;
      listed: number;
      downloaded: number;
      skipped: number;
      failed: number;
      refused: number;
      bytes: number;
      durationMs: number;
    }
  >;
  annotations?: {
    at: string;
    path: string;
    bytes: number;
    images: number;
    imagesWithPneumothorax: number;
    masks: number;
  };
  lastRun?: { startedAt: string; finishedAt?: string; exitCode?: number; error?: string };
}

export const emptyState = (): RunState => ({ version: 1, exports: {}, mirrors: {} });

/**
 * Makes `state` belong to `endpoint`. Checkpoints recorded against another endpoint (another
 * local cloud, or Google instead of an emulator) name operations that do not exist here, so they
 * are dropped; returns whether that happened.
 */
export function adoptEndpoint(state: RunState, endpoint: string): boolean {
  if (state.endpoint === endpoint) return false;
  const stale = state.endpoint !== undefined || Object.keys(state.exports).length > 0 || state.bucket !== undefined;
  for (const k of Object.keys(state) as Array<keyof RunState>) delete state[k];
  Object.assign(state, emptyState(), { endpoint });
  return stale;
}

/** Where run state lives (a port: a file for real runs, memory for the demo and tests). */
export interface StateStore {
  readonly state: RunState;
  /** Applies a change and persists it before returning. */
  update(change: (s: RunState) => void): Promise<void>;
}

export class MemoryStateStore implements StateStore {
  readonly state: RunState;
  constructor(initial: RunState = emptyState()) {
    this.state = initial;
  }
  async update(change: (s: RunState) => void): Promise<void> {
    change(this.state);
  }
}

/** `DIR/state.json`, replaced atomically (temp + fsync + rename + dir fsync) on every update. */
export class FileStateStore implements StateStore {
  readonly file: string;
  readonly state: RunState;
  private constructor(file: string, state: RunState) {
    this.file = file;
    this.state = state;
  }

  static async open(stateDir: string): Promise<FileStateStore> {
    const file = path.join(stateDir, "state.json");
    return new FileStateStore(file, await readState(file));
  }

  async update(change: (s: RunState) => void): Promise<void> {
    change(this.state);
    try {
      await replaceFileAtomic(this.file, `${JSON.stringify(this.state, null, 2)}\n`);
    } catch (err) {
      // Say which file could not be saved (a bare "ENOSPC: …, write" names neither file nor fix).
      const fault = destinationFault(err);
      throw new HcexportError(`cannot save the run state ${this.file}: ${fault ?? (err as Error).message}`, 1, {
        cause: err,
        ...(fault === undefined
          ? {}
          : {
              hint: fault.startsWith("EROFS")
                ? "make the state directory writable, then run again: finished steps are kept"
                : "free space (or raise the quota), then run again: finished steps are kept and the mirror resumes",
            }),
      });
    }
  }
}

/** Reads a state file; a missing file is an empty state, a corrupt one an error that says what to do. */
export async function readState(file: string): Promise<RunState> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return emptyState();
    throw err;
  }
  try {
    const s = JSON.parse(text) as RunState;
    if (s.version !== 1 || typeof s.exports !== "object" || typeof s.mirrors !== "object")
      throw new Error("unexpected shape");
    return s;
  } catch (err) {
    throw new HcexportError(`state file ${file} is unreadable: ${(err as Error).message}`, 1, {
      hint: `move it aside and run again: finished exports are then started again, which is harmless (an export overwrites objects with identical bytes) and the mirror stays incremental`,
    });
  }
}
