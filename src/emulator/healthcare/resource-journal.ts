import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { HealthcarePolicy } from "./iam-policies.ts";
import type { HealthcareModel } from "./model.ts";
import { isParseFailure, parseStoredInstance, type StoredInstance } from "./stored-instance.ts";

/** The resources file and the instance blobs inside the emulator's `--data DIR`. */
export const RESOURCES_FILE = "healthcare-resources.json";
export const INSTANCES_DIR = "healthcare-instances";

interface Snapshot {
  version: 1;
  datasets: { name: string; config: Record<string, unknown> }[];
  dicomStores: { name: string; config: Record<string, unknown>; instances: string[] }[];
  fhirStores: { name: string; config: Record<string, unknown>; resources: Record<string, unknown>[] }[];
  iam: Record<string, HealthcarePolicy>;
}

const digests = new WeakMap<StoredInstance, string>();
const written = new Set<string>();

function digestOf(inst: StoredInstance): string {
  let d = digests.get(inst);
  if (d === undefined) digests.set(inst, (d = createHash("sha256").update(inst.data()).digest("hex")));
  return d;
}

function writeAtomic(file: string, data: string | Buffer): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, file);
}

/**
 * Saves datasets, stores (with their fields), FHIR resources, IAM policies and the users' own
 * instances (content-addressed blobs, each written once) so that `--data DIR` keeps them across
 * restarts. The generated SIIM stores are not saved: `--dataset siim` makes them again.
 */
export function saveResources(dir: string, model: HealthcareModel): void {
  const blobs = path.join(dir, INSTANCES_DIR);
  mkdirSync(blobs, { recursive: true });
  const snapshot: Snapshot = {
    version: 1,
    datasets: [...model.datasets.values()].map((d) => ({ name: d.name, config: d.config })),
    dicomStores: [...model.dicomStores.values()]
      .filter((s) => !model.generated.has(s.name))
      .map((s) => ({
        name: s.name,
        config: s.config,
        instances: s.instances
          .filter((i): i is StoredInstance => "kind" in i)
          .map((i) => {
            const d = digestOf(i);
            const file = path.join(blobs, `${d}.dcm`);
            if (!written.has(file) && !existsSync(file)) writeAtomic(file, i.data());
            written.add(file);
            return d;
          }),
      })),
    fhirStores: [...model.fhirStores.values()]
      .filter((s) => !model.generated.has(s.name))
      .map((s) => ({
        name: s.name,
        config: s.config,
        resources: [...s.resources.values()],
      })),
    iam: Object.fromEntries(model.iam.entries()),
  };
  writeAtomic(path.join(dir, RESOURCES_FILE), `${JSON.stringify(snapshot)}\n`);
}

/** Restores what `saveResources` wrote (nothing when the file is absent); a corrupt file is an error saying what to do. */
export function loadResources(dir: string, model: HealthcareModel): void {
  const file = path.join(dir, RESOURCES_FILE);
  if (!existsSync(file)) return;
  let snap: Snapshot;
  try {
    snap = JSON.parse(readFileSync(file, "utf8")) as Snapshot;
    if (snap.version !== 1) throw new Error("not a version 1 resources file");
  } catch (err) {
    throw new Error(
      `cannot read the emulator's Healthcare resources ${file} (${err instanceof Error ? err.message : String(err)}); delete it to start without them`,
      { cause: err },
    );
  }
  for (const d of snap.datasets) model.datasets.set(d.name, { name: d.name, config: d.config });
  for (const s of snap.dicomStores) {
    const instances = s.instances.map((d) => {
      const blob = path.join(dir, INSTANCES_DIR, `${d}.dcm`);
      const parsed = parseStoredInstance(readFileSync(blob));
      if (isParseFailure(parsed)) throw new Error(`the emulator's instance blob ${blob} is damaged: ${parsed.reason}`);
      digests.set(parsed, d);
      return parsed;
    });
    model.addDicomStore(s.name, instances, s.config);
  }
  for (const s of snap.fhirStores) {
    const rec = model.addFhirStore(s.name, s.config);
    for (const r of s.resources) rec.resources.set(`${String(r["resourceType"])}/${String(r["id"])}`, r);
  }
  for (const [name, policy] of Object.entries(snap.iam)) model.iam.restore(name, policy);
}
