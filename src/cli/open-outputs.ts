import type { CliIo } from "./context.ts";

/** What closeOutputs needs of an Output; kept apart so run-cli can close outputs without loading ora. */
interface Closable {
  stopStatus(failed: boolean): void;
}

/** The outputs each invocation opened, so the CLI can close them whatever the command did. */
const opened = new WeakMap<CliIo, Set<Closable>>();

/** Records an output of `io`'s invocation (createContext does). */
export function registerOutput(io: CliIo, out: Closable): void {
  let set = opened.get(io);
  if (set === undefined) opened.set(io, (set = new Set()));
  set.add(out);
}

/**
 * Stops every spinner the invocation's outputs started (marked ✖ when `failed`). Called by runCli
 * after every command, so a command that throws mid-step can never leave a spinner's timer
 * keeping the process alive (issue #10).
 */
export function closeOutputs(io: CliIo, failed: boolean): void {
  for (const out of opened.get(io) ?? []) out.stopStatus(failed);
  opened.delete(io);
}
