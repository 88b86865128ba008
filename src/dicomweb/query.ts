import { UsageError } from "../core/errors.ts";
import { tagOf } from "./keywords.ts";
import type { QidoQuery } from "./search.ts";

/** One `--filter KEY=VALUE`: the attribute's tag and the value as QIDO-RS matches it. */
export interface QidoFilter {
  readonly tag: string;
  readonly value: string;
}

/**
 * Parses `KEY=VALUE` filters: KEY is a keyword (`PatientID`, any case) or a tag (`00100020`,
 * `0010,0020`); VALUE is sent as given, so the server's matching applies (exact, `*`/`?`
 * wildcards, `A-B` date ranges, comma-separated UID lists). Filtering twice on one key is refused:
 * QIDO-RS does not define it.
 */
export function parseFilters(raw: readonly string[]): QidoFilter[] {
  const out: QidoFilter[] = [];
  for (const f of raw) {
    const eq = f.indexOf("=");
    if (eq <= 0) throw new UsageError(`--filter "${f}": expected KEY=VALUE (e.g. Modality=CR or 00100020=P1)`);
    const key = f.slice(0, eq);
    const tag = tagOf(key);
    if (tag === undefined)
      throw new UsageError(`--filter "${f}": ${key} is not a known QIDO-RS keyword; give its 8-hex-digit tag instead`);
    if (out.some((o) => o.tag === tag)) throw new UsageError(`--filter: ${key} is given twice`);
    out.push({ tag, value: f.slice(eq + 1) });
  }
  return out;
}

/** `--include FIELD`: keywords or tags to tags (`all` kept). */
export function parseIncludes(raw: readonly string[]): string[] {
  return raw
    .flatMap((r) => r.split(","))
    .map((r) => r.trim())
    .filter((r) => r !== "")
    .map((r) => {
      if (r === "all") return r;
      const tag = tagOf(r);
      if (tag === undefined) throw new UsageError(`--include ${r}: not a known keyword; give its 8-hex-digit tag`);
      return tag;
    });
}

/** The QIDO query of filters, includes and `fuzzymatching`. */
export function qidoQuery(filters: readonly QidoFilter[], include: readonly string[] = [], fuzzy = false): QidoQuery {
  const q: Record<string, string | readonly string[]> = {};
  for (const f of filters) q[f.tag] = f.value;
  if (include.length > 0) q["includefield"] = include;
  if (fuzzy) q["fuzzymatching"] = "true";
  return q;
}
