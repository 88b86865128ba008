import { createHash } from "node:crypto";

/** A project known to the local cloud. */
export interface ProjectRecord {
  readonly projectId: string;
  readonly projectNumber: string;
  readonly createTime: string;
}

/**
 * The projects of the local cloud: the ones configured (e.g. the SIIM source project with its real
 * number) plus any project a client names (bucket insert `?project=P`), which gets a stable
 * 12-digit number derived from its id.
 */
export class ProjectRegistry {
  readonly #byId = new Map<string, ProjectRecord>();
  /** Ids listed here are hidden from Resource Manager lookups (403), like a project you can't see. */
  readonly #hidden = new Set<string>();

  constructor(initial: Record<string, string> = {}) {
    for (const [id, num] of Object.entries(initial)) this.add(id, num);
  }

  add(projectId: string, projectNumber: string): ProjectRecord {
    const rec = { projectId, projectNumber, createTime: "2019-05-01T00:00:00.000Z" };
    this.#byId.set(projectId, rec);
    return rec;
  }

  hide(projectId: string): void {
    this.#hidden.add(projectId);
  }

  isHidden(projectId: string): boolean {
    return this.#hidden.has(projectId);
  }

  /** Looks a project up by id or number, creating it on first mention. */
  ensure(idOrNumber: string): ProjectRecord {
    const known = this.get(idOrNumber);
    if (known !== undefined) return known;
    if (/^\d+$/.test(idOrNumber)) return this.add(`project-${idOrNumber}`, idOrNumber);
    const n =
      (BigInt(`0x${createHash("sha256").update(idOrNumber).digest("hex").slice(0, 12)}`) % 900_000_000_000n) +
      100_000_000_000n;
    return this.add(idOrNumber, n.toString());
  }

  get(idOrNumber: string): ProjectRecord | undefined {
    return this.#byId.get(idOrNumber) ?? [...this.#byId.values()].find((p) => p.projectNumber === idOrNumber);
  }
}
