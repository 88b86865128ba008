import { appendFile, mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { replaceFileAtomic } from "../core/atomic-file.ts";
import { RESERVED_DIR } from "../core/safe-path.ts";

/** What was downloaded to a path, and the local file's identity right after. */
export interface ManifestEntry {
  /** relative path */
  readonly n: string;
  readonly size: number;
  readonly generation: string;
  readonly crc32c?: string;
  readonly md5?: string;
  /** mtime in ms of the local file when it was written */
  readonly mtimeMs: number;
}

/**
 * The mirror's local manifest, `DIR/.hcexport/manifest.ndjson`: appended as files land (so an
 * interrupted mirror knows what finished), compacted at the end. A torn last line is ignored.
 */
export class Manifest {
  readonly file: string;
  readonly #entries = new Map<string, ManifestEntry>();
  #pending: string[] = [];

  private constructor(file: string) {
    this.file = file;
  }

  static async open(dest: string): Promise<Manifest> {
    const m = new Manifest(path.join(dest, RESERVED_DIR, "manifest.ndjson"));
    const text = await readFile(m.file, "utf8").catch(() => "");
    for (const line of text.split("\n")) {
      if (line === "") continue;
      try {
        const e = JSON.parse(line) as ManifestEntry;
        if (typeof e.n === "string" && typeof e.size === "number") m.#entries.set(e.n, e);
      } catch {
        // torn line from a crash: ignore
      }
    }
    return m;
  }

  get(rel: string): ManifestEntry | undefined {
    return this.#entries.get(rel);
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Records an entry; buffered, written by `flush`. */
  set(entry: ManifestEntry): void {
    this.#entries.set(entry.n, entry);
    this.#pending.push(JSON.stringify(entry));
  }

  async flush(): Promise<void> {
    if (this.#pending.length === 0) return;
    const lines = this.#pending;
    this.#pending = [];
    await mkdir(path.dirname(this.file), { recursive: true });
    await appendFile(this.file, `${lines.join("\n")}\n`);
  }

  /** Rewrites the manifest with only current entries. */
  async compact(keep?: (e: ManifestEntry) => boolean): Promise<void> {
    this.#pending = [];
    const lines = [...this.#entries.values()].filter((e) => keep?.(e) ?? true).map((e) => JSON.stringify(e));
    await replaceFileAtomic(this.file, lines.length === 0 ? "" : `${lines.join("\n")}\n`);
  }
}
