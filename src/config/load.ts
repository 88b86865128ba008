import { readFile } from "node:fs/promises";
import path from "node:path";
import { UsageError } from "../core/errors.ts";
import { checkFilterPath, filterLines } from "../gcp/export-options.ts";
import { validateConfig, type Config } from "./schema.ts";

/** Settings that flags and `HCEXPORT_*` env (merged by yargs) may override. */
export interface ConfigOverrides {
  readonly project?: string | undefined;
  readonly grantIam?: boolean | undefined;
  readonly concurrency?: number | undefined;
}

/** A loaded config, with paths resolved against the config file's directory. */
export interface LoadedConfig {
  readonly file: string;
  readonly config: Config;
  /** Absolute state directory (`.hcexport/` beside the config by default). */
  readonly stateDir: string;
}

/**
 * Reads and validates a config file, then applies overrides (flags > env > file > defaults).
 * Every problem is reported at once, with its JSON path, as a UsageError (exit 2).
 */
export async function loadConfig(file: string, overrides: ConfigOverrides = {}): Promise<LoadedConfig> {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = await readFile(abs, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read config ${file}: ${(err as Error).message}`, {
      hint: "pass the path of a config file, e.g. config/siim.json",
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  const merged = applyOverrides(json, overrides);
  const { config, problems } = validateConfig(merged);
  if (config === undefined) {
    throw new UsageError(
      `${file} has ${problems.length} problem${problems.length === 1 ? "" : "s"}:\n${problems.map((p) => `  ${p.path}: ${p.message}`).join("\n")}`,
      {
        hint: "fix the config (see config/siim.json for a complete example)",
      },
    );
  }
  const dir = path.dirname(abs);
  const exports = await Promise.all(
    config.exports.map(async (e, i) => ({
      ...e,
      dest: path.resolve(dir, e.dest),
      ...(e.filterFile === undefined
        ? {}
        : {
            filterFile: path.resolve(dir, e.filterFile),
            filter: await readFilterFile(`${file}: exports[${i}].filterFile`, dir, e.filterFile),
          }),
    })),
  );
  const resolved: Config = {
    ...config,
    exports,
    ...(config.annotations === undefined
      ? {}
      : { annotations: { ...config.annotations, dest: path.resolve(dir, config.annotations.dest) } }),
    ...(config.fhirExports === undefined
      ? {}
      : { fhirExports: config.fhirExports.map((f) => ({ ...f, dest: path.resolve(dir, f.dest) })) }),
  };
  return { file: abs, config: resolved, stateDir: path.resolve(dir, config.stateDir) };
}

/**
 * The paths of a filter file (`exports[i].filterFile`, `export --filter-file`): one a line, `\n` or
 * `\r\n`, each checked; a UsageError (exit 2) says `where` and names the bad lines.
 */
export async function readFilterFile(where: string, dir: string, filterFile: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path.resolve(dir, filterFile), "utf8");
  } catch (err) {
    throw new UsageError(`${where}: cannot read ${filterFile}: ${(err as Error).message}`);
  }
  const lines = filterLines(text);
  if (lines.length === 0) throw new UsageError(`${where}: ${filterFile} lists no study or series`);
  const bad = text
    .split(/\r?\n/)
    .map((l, n) => [n, l.trim() === "" ? undefined : checkFilterPath(l.trim())] as const)
    .filter(([, b]) => b !== undefined);
  if (bad.length > 0)
    throw new UsageError(
      `${where}: ${filterFile} has ${bad.length} bad line${bad.length === 1 ? "" : "s"}:\n${bad
        .slice(0, 10)
        .map(([n, b]) => `  ${n + 1}: ${b}`)
        .join("\n")}`,
      { hint: "one /studies/STUDY_UID or /studies/STUDY_UID/series/SERIES_UID a line" },
    );
  return lines;
}

/** Pure: flags/env win over the file for the few settings they name. */
export function applyOverrides(json: unknown, o: ConfigOverrides): unknown {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return json;
  const out: Record<string, unknown> = { ...(json as Record<string, unknown>) };
  if (o.project !== undefined) out["project"] = o.project;
  if (o.grantIam !== undefined) out["grantIam"] = o.grantIam;
  if (o.concurrency !== undefined) {
    const m =
      typeof out["mirror"] === "object" && out["mirror"] !== null ? (out["mirror"] as Record<string, unknown>) : {};
    out["mirror"] = { ...m, concurrency: o.concurrency };
  }
  return out;
}
