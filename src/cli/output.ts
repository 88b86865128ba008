import { createRequire } from "node:module";
import type { Writable } from "node:stream";
import type { Ora, Options as OraOptions } from "ora";
import stringWidth from "./fast-string-width.ts";
import { redactSecrets } from "../core/redact.ts";
import { escapeControls, escapeJsonControls } from "../core/terminal-text.ts";

/** Any event a module emits: a union member keyed on `kind` (see src/core/events.ts). */
export interface AnyEvent {
  readonly kind: string;
}

/**
 * How one event kind is shown to a person: a `line` is printed once and stays; a `status` replaces
 * the transient status line (spinner / progress bar on a TTY, throttled plain lines otherwise).
 * `level` decides what --quiet and --verbose show (default `info`).
 */
export interface Rendered {
  readonly line?: string;
  readonly status?: string;
  readonly level?: "debug" | "info" | "warn" | "error";
  /** On a TTY, marks the end of a status with success or failure. */
  readonly done?: "succeed" | "fail";
  /**
   * The concurrent activity (a step's key) a status or an end belongs to: when one ends while others
   * run (lanes in parallel), the status line goes on with the latest still running.
   */
  readonly key?: string;
}
export type Formatter = (event: AnyEvent) => Rendered | undefined;

export interface OutputOptions {
  readonly json: boolean;
  readonly quiet: boolean;
  readonly verbose: boolean;
  readonly stdout: Writable & { isTTY?: boolean };
  readonly stderr: Writable & { isTTY?: boolean };
  readonly now?: () => number;
}

/**
 * The one place that writes to the terminal, and the output edge of credential redaction
 * (`redactSecrets` on every line, status, result and event). `--json`: every event as one NDJSON line on stdout
 * and nothing else. Otherwise: human lines on stderr (results on stdout), an ora spinner for the
 * status on a TTY, and status lines at most every 2 s when not a TTY. Every text passes through
 * `escapeControls` here, the output edge: remote text never reaches the terminal raw.
 */
export class Output {
  readonly options: OutputOptions;
  readonly #formatters: Formatter[] = [];
  #spinner: Ora | undefined;
  /** Statuses of the activities now running, by key (see Rendered.key). */
  readonly #running = new Map<string, string>();
  #lastPlainStatus = 0;
  constructor(options: OutputOptions) {
    this.options = options;
  }

  /** Adds a formatter; the first that returns something wins. */
  use(formatter: Formatter): this {
    this.#formatters.push(formatter);
    return this;
  }

  /** Spinners only on a real terminal with a known width (a 0-column pty made ora clear lines forever). */
  get isTTY(): boolean {
    const err = this.options.stderr as { isTTY?: boolean; columns?: number };
    return err.isTTY === true && (err.columns ?? 0) > 0 && !this.options.json;
  }

  /** Sink for module events. */
  readonly emit = (event: AnyEvent): void => {
    if (this.options.json) {
      this.#json({ ...event, time: new Date(this.#now()).toISOString() });
      return;
    }
    let rendered: Rendered | undefined;
    for (const f of this.#formatters) {
      rendered = f(event);
      if (rendered !== undefined) break;
    }
    if (rendered === undefined) return;
    const level = rendered.level ?? "info";
    if (level === "debug" && !this.options.verbose) return;
    if (this.options.quiet && level !== "error" && level !== "warn") return;
    if (rendered.key !== undefined) {
      if (rendered.done !== undefined) this.#running.delete(rendered.key);
      else if (rendered.status !== undefined) this.#running.set(rendered.key, rendered.status);
    }
    if (rendered.status !== undefined) this.#status(rendered.status);
    if (rendered.done !== undefined && this.#spinner !== undefined) {
      const sp = this.#spinner;
      this.#spinner = undefined;
      // ora draws its own ✔/✖ symbol.
      const text = rendered.line === undefined ? undefined : escapeControls(rendered.line.replace(/^[✔✖] /, ""));
      if (rendered.done === "succeed") sp.succeed(text);
      else sp.fail(text);
      const still = [...this.#running.values()].at(-1);
      if (still !== undefined) this.#status(still);
      return;
    }
    if (rendered.line !== undefined) this.line(rendered.line);
  };

  /** A human line on stderr (kept out of stdout so results stay pipeable). */
  line(raw: string): void {
    if (this.options.json) return;
    const text = escapeControls(redactSecrets(raw));
    if (this.#spinner !== undefined && this.isTTY) {
      this.#spinner.clear();
      this.options.stderr.write(`${text}\n`);
      this.#spinner.render();
    } else {
      this.options.stderr.write(`${text}\n`);
    }
  }

  /** The command's result: a JSON object with --json, text on stdout otherwise. */
  result(text: string, json: unknown): void {
    this.stopStatus();
    if (this.options.json) this.#json({ kind: "result", ...(json as object) });
    else if (text !== "")
      this.options.stdout.write(escapeControls(redactSecrets(text.endsWith("\n") ? text : `${text}\n`)));
  }

  /** An error, always shown (as an `error` event with --json). */
  error(message: string, details: Record<string, unknown> = {}): void {
    this.stopStatus();
    if (this.options.json) this.#json({ kind: "error", message, ...details });
    else {
      this.options.stderr.write(`error: ${escapeControls(redactSecrets(message))}\n`);
      if (typeof details["hint"] === "string")
        this.options.stderr.write(`  fix: ${escapeControls(redactSecrets(details["hint"]))}\n`);
    }
  }

  /**
   * Ends the status line. `failed` leaves the running step marked ✖ on a TTY (the step the error
   * or the interruption stopped), so the last frame says where it stopped. A spinner left running
   * would keep the process alive after its result (issue #10), so every command's output is closed
   * by the CLI whatever happened (see createContext / closeOutputs).
   */
  stopStatus(failed = false): void {
    const sp = this.#spinner;
    this.#spinner = undefined;
    if (sp === undefined) return;
    if (failed) sp.fail();
    else sp.stop();
  }

  #json(value: object): void {
    this.options.stdout.write(`${escapeJsonControls(redactSecrets(JSON.stringify(value, jsonReplacer)))}\n`);
  }

  #status(raw: string): void {
    const columns = (this.options.stderr as { columns?: number }).columns ?? 0;
    // One terminal row, with room for the spinner and for the "^C" the terminal echoes on Ctrl-C: a
    // status that wraps (or that the echo wraps) is redrawn one row off and left on the screen.
    const text = fitColumns(escapeControls(redactSecrets(raw), { oneLine: true }), this.isTTY ? columns - 5 : Infinity);
    if (this.isTTY) {
      if (this.#spinner === undefined)
        // isEnabled: this Output already knows the stream is a terminal of known width; left to
        // itself ora turns the spinner off whenever CI is set, even on a real terminal.
        this.#spinner = loadOra()({ text, stream: this.options.stderr, discardStdin: false, isEnabled: true }).start();
      else this.#spinner.text = text;
      return;
    }
    const now = this.#now();
    if (now - this.#lastPlainStatus < 2000) return;
    this.#lastPlainStatus = now;
    this.options.stderr.write(`${text}\n`);
  }

  #now(): number {
    return (this.options.now ?? Date.now)();
  }
}

/** `text` cut to at most `columns` terminal columns (wide characters count two), ending in "…" when cut. */
export function fitColumns(text: string, columns: number): string {
  if (stringWidth(text) <= columns) return text;
  let out = "";
  let width = 0;
  for (const { segment } of new Intl.Segmenter().segment(text)) {
    const w = stringWidth(segment);
    if (width + w > columns - 1) break;
    out += segment;
    width += w;
  }
  return `${out}…`;
}

/**
 * ora (and its chalk, cli-cursor, log-symbols…) only once a spinner is drawn, on a terminal: a
 * piped, --quiet or --json run never needs it, and loading it was a good part of start-up.
 */
let ora: ((options: OraOptions) => Ora) | undefined;
function loadOra(): (options: OraOptions) => Ora {
  ora ??= (createRequire(import.meta.url)("ora") as { default: (options: OraOptions) => Ora }).default;
  return ora;
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) return { name: value.name, message: value.message };
  return value;
}
