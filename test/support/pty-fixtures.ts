import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { TEMP_MARKER } from "../../src/core/safe-path.ts";

/**
 * What the pty suites share: a config for the local cloud with everything under one directory,
 * and the checks after an interruption (no temp files, no lock).
 */

/** config/demo.json with its destinations and state under `dir`; `patch` overrides top-level keys. */
export async function demoConfig(dir: string, patch: Record<string, unknown> = {}): Promise<string> {
  const demo = JSON.parse(await readFile(path.resolve("config/demo.json"), "utf8")) as Record<string, unknown> & {
    exports: Array<{ dest: string }>;
  };
  const cfg = {
    ...demo,
    exports: demo.exports.map((e) => ({ ...e, dest: e.dest.replace("../demo-out", "./out") })),
    annotations: { ...(demo["annotations"] as object), dest: "./out/annotations" },
    stateDir: "./out/.hcexport",
    ...patch,
  };
  const file = path.join(dir, "config.json");
  await writeFile(file, JSON.stringify(cfg, null, 2));
  return file;
}

/** Every temp file (ours: `.NAME.hcx-tmp-…`) under `dir`, relative; [] when there is none. */
export async function tempFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.name.includes(TEMP_MARKER) || e.name.endsWith(".new") || e.name.endsWith(".takeover"))
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

/** Whether a run's lock file is present in `stateDir`. */
export async function lockPresent(stateDir: string): Promise<boolean> {
  return (await readdir(stateDir).catch(() => [] as string[])).includes("lock");
}

/** The braille frames of ora's default spinner: none may be left on a finished command's last frame. */
export const SPINNER_FRAME = /[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]/;

/**
 * An interrupted command's last screen without a row where a redraw landed right after the
 * terminal's "^C" echo, for the spinner check. On Ctrl-C the line discipline flushes the output
 * the terminal has not read yet (termios(3): ISIG without NOFLSH), so a redraw can lose its
 * cursor-to-column-0 and clear-line writes and land after the echo, wrapping: seen once in CI as
 * `⠙ …/annotations^C⠹ annot`. No program can repair a row whose content it does not know. A
 * spinner that was simply left on the screen (`⠙ text^C`, nothing drawn after the echo) is still
 * caught, and so is one on any other row.
 */
export function withoutEchoRow(screen: string): string {
  const redrawAfterEcho = new RegExp(`\\^C${SPINNER_FRAME.source} `);
  return screen
    .split("\n")
    .filter((row) => !redrawAfterEcho.test(row))
    .join("\n");
}

/**
 * The contracts are 2 s from a signal to the exit and 1 s from a result to the exit (measured on
 * an idle machine: 0.1–1 s and under 0.3 s). The bounds add 0.5 s for the harness's polling and a
 * machine loaded far past its cores; what they guard against — a swallowed signal, a spinner
 * keeping the process alive, an SDK's retries — takes 5 s or forever.
 */
export const STOP_BOUND_MS = 2500;
export const RESULT_BOUND_MS = 1500;
