import { existsSync, mkdirSync, renameSync } from "node:fs";
import path from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { taggedByThisProcess, tempWriterGone, writerTag } from "../core/temp-names.ts";
import { RESERVED_DIR } from "../core/safe-path.ts";
import { compareUtf8 } from "../core/utf8-order.ts";
import type { RemoteObject } from "./ports.ts";

/** What was downloaded to a path, and the local file's identity right after it landed. */
export interface ManifestEntry {
  /** Path relative to the destination. */
  readonly name: string;
  readonly size: number;
  readonly generation: string;
  readonly crc32c?: string | undefined;
  readonly md5?: string | undefined;
  /** The object's ETag when listed (compared only for objects without a hash). */
  readonly etag?: string | undefined;
  /** The local file's mtime in ns and inode number (decimal strings) when it was written. */
  readonly mtimeNs: string;
  readonly ino: string;
}

/** The row for `rel` holding the listed object `obj`, with the local file's identity. */
export function manifestEntry(
  rel: string,
  obj: RemoteObject,
  identity: { mtimeNs: string; ino: string },
): ManifestEntry {
  return {
    name: rel,
    size: obj.size,
    generation: obj.generation,
    crc32c: obj.crc32c,
    md5: obj.md5Hash,
    etag: obj.etag,
    mtimeNs: identity.mtimeNs,
    ino: identity.ino,
  };
}

/** The `sessions` row that says a run has ended cleanly at least once (open runs have their own rows). */
const CLEAN_END = "clean-end";

/** Run rows of this process whose manifest is still open (a library caller may run several). */
const openRuns = new Set<string>();

/** Whether the run that wrote row `id` is certainly over: this process's and closed, or a dead pid of this host. */
function runGone(id: string): boolean {
  if (openRuns.has(id)) return false;
  return taggedByThisProcess(id) || tempWriterGone(id);
}

/** Puts are committed in transactions of this many (or on `flush`). */
const BATCH = 512;

/** Rows read ahead per page when lookups come in name order (a re-sync's check stage). */
const PAGE = 256;

/** A `files` row as SQLite returns it with `setReturnArrays`. */
type Row = [string, number, string, string | null, string | null, string | null, string, string];

/**
 * The rows with names in [`lo`, `hi`] (`hi` unbounded when `last`), in name order: lookups in
 * order, which is how the check stage asks, are answered from it instead of one query each.
 * Writes on the same manifest patch it, so it never answers with a row the table no longer has.
 */
interface Page {
  readonly lo: string;
  readonly hi: string;
  readonly last: boolean;
  readonly rows: Row[];
  /** Where the next lookup in order is expected (checked by equality before any search). */
  next: number;
}

/**
 * The mirror's local manifest, `DIR/.hcexport/manifest.sqlite` (node:sqlite, WAL): name → size,
 * generation, digests and the local file's identity. Lookups go to disk, so memory stays flat at
 * millions of entries; puts are batched into transactions. A kill -9 loses at most the last
 * uncommitted batch, and those files are then re-hashed (not re-downloaded) on the next run.
 * Also holds the run's pending deletes, so they never sit in memory, and the runs that have not
 * ended cleanly (`sessions`), which decide whether a re-sync must walk the destination.
 */
export class Manifest {
  readonly file: string;
  readonly #db: DatabaseSync;
  readonly #get: StatementSync;
  readonly #page: StatementSync;
  #ahead: Page | undefined;
  readonly #put: StatementSync | undefined;
  readonly #del: StatementSync | undefined;
  readonly #addExtra: StatementSync | undefined;
  #inTx = 0;
  /** This run's row in `sessions` (see {@link beginRun}), until {@link endRun}. */
  #session: string | undefined;

  private constructor(file: string, db: DatabaseSync, readOnly: boolean) {
    this.file = file;
    this.#db = db;
    // A read-only open of a manifest from before the etag column reads it as unknown.
    const hasEtag = (db.prepare("PRAGMA table_info(files)").all() as Array<{ name: string }>).some(
      (c) => c.name === "etag",
    );
    const columns = `name, size, generation, crc32c, md5, ${hasEtag ? "etag" : "NULL AS etag"}, mtime_ns, ino`;
    this.#get = db.prepare(`SELECT ${columns} FROM files WHERE name = ?`);
    this.#page = db.prepare(`SELECT ${columns} FROM files WHERE name >= ? ORDER BY name LIMIT ${PAGE}`);
    // Rows as arrays: a no-op re-sync looks up every file, and objects cost a third more.
    this.#get.setReturnArrays(true);
    this.#page.setReturnArrays(true);
    if (!readOnly) {
      this.#put = db.prepare(
        "INSERT OR REPLACE INTO files (name, size, generation, crc32c, md5, etag, mtime_ns, ino) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      );
      this.#del = db.prepare("DELETE FROM files WHERE name = ?");
      this.#addExtra = db.prepare("INSERT OR IGNORE INTO pending_delete (name) VALUES (?)");
    }
  }

  /**
   * Opens (creating unless `readOnly`) the manifest of `dest`. A read-only open of a missing
   * manifest gives an empty in-memory one (dry runs write nothing).
   */
  static open(
    dest: string,
    options: { readonly readOnly?: boolean; readonly onReset?: (reset: ManifestReset) => void } = {},
  ): Manifest {
    const file = path.join(dest, RESERVED_DIR, "manifest.sqlite");
    const readOnly = options.readOnly === true;
    const memory = () => {
      const mem = new DatabaseSync(":memory:");
      createSchema(mem);
      return new Manifest(file, mem, true);
    };
    if (readOnly && !existsSync(file)) return memory();
    if (!readOnly) mkdirSync(path.dirname(file), { recursive: true });
    try {
      return Manifest.#openFile(file, readOnly);
    } catch (err) {
      // Only a broken file; a busy one (another run's lock) or a full disk is not ours to move.
      if (!isCorruptionMessage(err) || !existsSync(file)) throw err;
      // The manifest is a cache: put the broken one aside (kept for inspection) and start
      // empty; every local file is then proved by hashing it against the listing.
      const reason = err instanceof Error ? err.message : String(err);
      if (readOnly) {
        options.onReset?.({ file, reason });
        return memory();
      }
      const movedTo = `${file}.corrupt-${Date.now()}`;
      try {
        renameSync(file, movedTo);
      } catch {
        throw err;
      }
      for (const side of ["-wal", "-shm"]) {
        try {
          renameSync(file + side, movedTo + side);
        } catch {
          // absent
        }
      }
      options.onReset?.({ file, movedTo, reason });
      return Manifest.#openFile(file, readOnly);
    }
  }

  static #openFile(file: string, readOnly: boolean): Manifest {
    const db = new DatabaseSync(file, { readOnly });
    try {
      db.exec("PRAGMA busy_timeout = 10000");
      if (!readOnly) {
        db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL");
        createSchema(db);
        db.exec("DELETE FROM pending_delete");
      }
      // Reads every page of the table once: a truncated or overwritten file fails here, at open,
      // not halfway through a run.
      db.prepare("SELECT count(*), max(length(name)) FROM files").get();
      return new Manifest(file, db, readOnly);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /**
   * The row for `name`. Asked in name order (the check stage follows the listing), rows come from
   * a page read ahead ({@link PAGE} at a time: a third of the cost of one query per name); a name
   * before the page, or one the page does not hold, is looked up on its own, so the answer never
   * depends on the order of the questions.
   */
  get(name: string): ManifestEntry | undefined {
    let page = this.#ahead;
    // The common case: the row right after the last one asked for.
    if (page !== undefined && page.rows[page.next]?.[0] === name) return entryOf(page.rows[page.next++]!);
    // A name after the page: read the next one. Before it (asked out of order): ask alone.
    if (page === undefined || !covers(page, name))
      page = page !== undefined && compareUtf8(name, page.lo) < 0 ? undefined : this.#readAhead(name);
    const at = page === undefined ? -1 : findRow(page.rows, name);
    if (at >= 0) page!.next = at + 1;
    const row = at >= 0 ? page!.rows[at] : (this.#get.get(name) as Row | undefined);
    return row === undefined ? undefined : entryOf(row);
  }

  /** Reads and keeps the page from `name` on. */
  #readAhead(name: string): Page {
    const rows = this.#page.all(name) as unknown as Row[];
    const last = rows.length < PAGE;
    this.#ahead = { lo: name, hi: rows.length === 0 ? name : rows[rows.length - 1]![0], last, rows, next: 0 };
    return this.#ahead;
  }

  /** Keeps the read-ahead page true to the table after a write of `name` (`row` undefined: deleted). */
  #patch(name: string, row: Row | undefined): void {
    const page = this.#ahead;
    if (page === undefined || !covers(page, name)) return;
    const at = findRow(page.rows, name);
    if (at >= 0 && row !== undefined) {
      page.rows[at] = row;
      return;
    }
    if (at >= 0) page.rows.splice(at, 1);
    else if (row !== undefined) {
      // Not found: insert in order.
      const before = page.rows.findIndex((r) => compareUtf8(r[0], name) > 0);
      page.rows.splice(before < 0 ? page.rows.length : before, 0, row);
    } else return;
    // Rows moved: the next lookup searches again.
    page.next = 0;
  }

  /** Records an entry (committed with its batch). */
  put(e: ManifestEntry): void {
    const row: Row = [e.name, e.size, e.generation, e.crc32c ?? null, e.md5 ?? null, e.etag ?? null, e.mtimeNs, e.ino];
    this.#write(this.#put, ...row);
    this.#patch(e.name, row);
  }

  remove(name: string): void {
    this.#write(this.#del, name);
    this.#patch(name, undefined);
  }

  /**
   * Remembers a destination-only file to delete after a clean run: its relative path, or its raw
   * bytes when they are not valid UTF-8 (stored as a BLOB, so they survive unchanged).
   */
  addPendingDelete(name: string | Uint8Array): void {
    this.#write(this.#addExtra, name);
  }

  /** The pending deletes in name order (raw-byte names as Buffers), streamed from disk. */
  *pendingDeletes(): Generator<string | Buffer> {
    this.flush();
    for (const row of this.#db.prepare("SELECT name FROM pending_delete ORDER BY name").iterate()) {
      const name = (row as { name: string | Uint8Array }).name;
      yield typeof name === "string" ? name : Buffer.from(name);
    }
  }

  pendingDeleteCount(): number {
    this.flush();
    return Number((this.#db.prepare("SELECT count(*) AS n FROM pending_delete").get() as { n: number }).n);
  }

  /**
   * Records that a run writing into the destination has started, durably (one synchronous commit,
   * before any temp file exists), and says whether every run before it ended cleanly: a run that
   * was killed, lost power or threw leaves its row, so the next run walks the destination to sweep
   * what it left (its temp files). A manifest that never saw a clean end (new, reset, or from
   * before this table) counts as not clean. A read-only manifest only answers.
   */
  beginRun(): { readonly previousClean: boolean } {
    if (!this.#hasSessions()) return { previousClean: false };
    const rows = this.#db.prepare("SELECT id FROM sessions").all() as Array<{ id: string }>;
    const previousClean = rows.some((r) => r.id === CLEAN_END) && rows.every((r) => r.id === CLEAN_END);
    if (this.#put === undefined) return { previousClean };
    this.flush();
    // Named like a temp file's writer, so that a later run can tell when its process is gone.
    const id = `run${writerTag()}`;
    // Durable before the first temp file: with synchronous=NORMAL a WAL commit is not fsynced.
    this.#db.exec("PRAGMA synchronous = FULL");
    try {
      this.#db.prepare("INSERT INTO sessions (id) VALUES (?)").run(id);
    } finally {
      this.#db.exec("PRAGMA synchronous = NORMAL");
    }
    this.#session = id;
    openRuns.add(id);
    return { previousClean };
  }

  /**
   * Marks this run's end as clean (every temp file it made is renamed or removed). After a walk
   * that left no temp file behind, the rows of runs whose process is certainly gone (this host,
   * pid not running; or this process's, closed) are cleared too, since the walk swept what they
   * left; a row of a run that may still be going (another host, a live pid) stays.
   */
  endRun(options: { readonly swept?: boolean; readonly writerGone?: (id: string) => boolean } = {}): void {
    if (this.#session === undefined || this.#put === undefined) return;
    const gone = options.writerGone ?? runGone;
    this.flush();
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const del = this.#db.prepare("DELETE FROM sessions WHERE id = ?");
      del.run(this.#session);
      if (options.swept === true)
        for (const { id } of this.#db.prepare("SELECT id FROM sessions").all() as Array<{ id: string }>)
          if (id !== CLEAN_END && gone(id)) del.run(id);
      this.#db.prepare("INSERT OR IGNORE INTO sessions (id) VALUES (?)").run(CLEAN_END);
      this.#db.exec("COMMIT");
    } catch (err) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw err;
    }
    openRuns.delete(this.#session);
    this.#session = undefined;
  }

  #hasSessions(): boolean {
    return (
      this.#db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'sessions'").get() !== undefined
    );
  }

  /** Commits the open batch. */
  flush(): void {
    if (this.#inTx > 0 && this.#db.isOpen) {
      // Counted as done even if COMMIT fails (a full disk): SQLite has rolled the batch back, and
      // the files it described are re-proved by hash on the next run.
      this.#inTx = 0;
      // A failed COMMIT rolls back rows the read-ahead page was patched with: read it again.
      this.#ahead = undefined;
      this.#db.exec("COMMIT");
    }
  }

  close(): void {
    if (this.#session !== undefined) openRuns.delete(this.#session);
    if (!this.#db.isOpen) return;
    try {
      this.flush();
      if (this.#put !== undefined) this.#db.exec("DELETE FROM pending_delete");
    } finally {
      // Closed even when the last write fails (a full disk): an open handle would pin the file system.
      this.#db.close();
    }
  }

  #write(stmt: StatementSync | undefined, ...params: Array<string | number | null | Uint8Array>): void {
    if (stmt === undefined) throw new Error("the manifest is open read-only");
    if (this.#inTx === 0) this.#db.exec("BEGIN IMMEDIATE");
    stmt.run(...params);
    if (++this.#inTx >= BATCH) this.flush();
  }
}

/** The entry a row holds. */
function entryOf([name, size, generation, crc32c, md5, etag, mtimeNs, ino]: Row): ManifestEntry {
  return {
    name,
    size,
    generation,
    crc32c: crc32c ?? undefined,
    md5: md5 ?? undefined,
    etag: etag ?? undefined,
    mtimeNs,
    ino,
  };
}

/** Whether `name` falls in the range the page holds every row of. */
function covers(page: Page, name: string): boolean {
  return compareUtf8(name, page.lo) >= 0 && (page.last || compareUtf8(name, page.hi) <= 0);
}

/** The index of `name`'s row in `rows` (sorted in byte order), or -1. */
function findRow(rows: readonly Row[], name: string): number {
  let lo = 0;
  let hi = rows.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareUtf8(rows[mid]![0], name);
    if (c === 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** A manifest that could not be read and was set aside (or, read-only, ignored). */
export interface ManifestReset {
  readonly file: string;
  /** Where the broken file now is (absent for a read-only open, which moves nothing). */
  readonly movedTo?: string;
  readonly reason: string;
}

function isCorruptionMessage(err: unknown): boolean {
  const m = err instanceof Error ? err.message : "";
  return /not a database|malformed|unable to open database|disk image|file is encrypted/i.test(m);
}

function createSchema(db: DatabaseSync): void {
  db.exec(`CREATE TABLE IF NOT EXISTS files (
    name TEXT PRIMARY KEY, size INTEGER NOT NULL, generation TEXT NOT NULL, crc32c TEXT, md5 TEXT, etag TEXT, mtime_ns TEXT NOT NULL, ino TEXT NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS pending_delete (name PRIMARY KEY) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY) WITHOUT ROWID`);
  // Manifests written before the etag column: add it (NULL = unknown).
  const columns = db.prepare("PRAGMA table_info(files)").all() as Array<{ name: string }>;
  if (!columns.some((c) => c.name === "etag")) db.exec("ALTER TABLE files ADD COLUMN etag TEXT");
}
