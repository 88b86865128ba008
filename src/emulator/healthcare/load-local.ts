import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { parseStoreName } from "../../core/resource-names.ts";
import type { ProjectRegistry } from "../projects.ts";
import { putInstance } from "./import-job.ts";
import type { HealthcareModel } from "./model.ts";
import { isParseFailure, parseStoredInstance } from "./stored-instance.ts";

/** One `--load STORE=DIR`. */
export interface LoadSpec {
  /** `projects/P/locations/L/datasets/D/dicomStores/S` */
  readonly store: string;
  readonly dir: string;
}

export interface LoadResult {
  readonly store: string;
  readonly dir: string;
  readonly loaded: number;
  readonly bytes: number;
  /** Files that are not DICOM Part 10 instances (or lack their UIDs), with why. */
  readonly skipped: readonly { file: string; reason: string }[];
  readonly serviceAgent: string;
}

/** Parses `STORE=DIR`; returns an error message for anything else. */
export function parseLoadSpec(raw: string): LoadSpec | string {
  const eq = raw.indexOf("=");
  if (eq <= 0 || eq === raw.length - 1)
    return `--load takes STORE=DIR (STORE = projects/P/locations/L/datasets/D/dicomStores/S), not "${raw}"`;
  const store = raw.slice(0, eq);
  const parsed = parseStoreName(store, "dicomStores");
  if (!parsed.ok) return `--load ${raw}: ${parsed.error}`;
  return { store, dir: raw.slice(eq + 1) };
}

/**
 * Preloads DICOM stores from local directories (walked recursively, symlinks not followed):
 * creates the project (so Resource Manager reports its number and its Healthcare service agent
 * is known), the dataset and the store, then stores every DICOM Part 10 file byte for byte.
 * Other files are skipped and reported. Two files with the same SOP Instance UID: the later
 * (in path order) wins, as a re-import would.
 */
export async function loadLocalStores(
  model: HealthcareModel,
  projects: ProjectRegistry,
  specs: readonly LoadSpec[],
): Promise<LoadResult[]> {
  const results: LoadResult[] = [];
  for (const spec of specs) {
    const project = projects.ensure(spec.store.split("/")[1]!);
    const store = model.dicomStores.get(spec.store) ?? model.addDicomStore(spec.store, []);
    const skipped: { file: string; reason: string }[] = [];
    let loaded = 0;
    let bytes = 0;
    for (const file of await walk(spec.dir)) {
      const data = await readFile(file);
      const parsed = parseStoredInstance(data);
      if (isParseFailure(parsed)) {
        skipped.push({ file, reason: parsed.reason });
        continue;
      }
      putInstance(store, parsed);
      loaded++;
      bytes += data.length;
    }
    results.push({
      store: spec.store,
      dir: spec.dir,
      loaded,
      bytes,
      skipped,
      serviceAgent: `service-${project.projectNumber}@gcp-sa-healthcare.iam.gserviceaccount.com`,
    });
  }
  if (specs.length > 0) model.resourcesChanged();
  return results;
}

/** Regular files under `dir`, in byte order of their paths. */
async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true });
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(full)));
    else if (e.isFile()) out.push(full);
  }
  return out;
}
