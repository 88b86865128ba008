import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { OperationRecord } from "./model.ts";

/**
 * Operations kept in one JSON file beside the emulator's object store (`--data DIR`), so that a
 * client polling across an emulator restart still finds its operation. Written whole to a
 * temporary file and renamed: a crash leaves the old or the new journal, never half of one.
 */
export function saveOperations(file: string, ops: readonly OperationRecord[]): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify({ version: 1, operations: ops }, null, 1)}\n`);
  renameSync(tmp, file);
}

/** The operations of a journal; an absent file is an empty list, a corrupt one an error that says what to do. */
export function loadOperations(file: string): OperationRecord[] {
  if (!existsSync(file)) return [];
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as { version?: number; operations?: OperationRecord[] };
    if (parsed.version !== 1 || !Array.isArray(parsed.operations)) throw new Error("not a version 1 journal");
    return parsed.operations.map((op) => ({ ...op, counter: { ...op.counter } }));
  } catch (err) {
    throw new Error(
      `cannot read the emulator's operations journal ${file} (${err instanceof Error ? err.message : String(err)}); delete it to start without past operations`,
      { cause: err },
    );
  }
}
