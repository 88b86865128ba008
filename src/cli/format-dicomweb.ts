import type { PullEvent } from "../dicomweb/pull.ts";
import type { AnyEvent, Formatter, Rendered } from "./output.ts";

const MiB = 1024 * 1024;

/** Human rendering of `dicomweb pull` events. */
export const formatDicomwebEvent: Formatter = (event: AnyEvent): Rendered | undefined => {
  if (!event.kind.startsWith("dicomweb.")) return undefined;
  const e = event as PullEvent;
  switch (e.kind) {
    case "dicomweb.start":
      return { status: `dicomweb: searching ${e.source} (${e.mode} retrieval, ${e.concurrency} parallel) → ${e.dest}` };
    case "dicomweb.search.page":
      return { line: `  QIDO ${e.path} offset ${e.offset}: ${e.rows} rows`, level: "debug" };
    case "dicomweb.search.capped":
      return {
        line: `  QIDO ${e.path}: the server returned ${e.rows} rows for limit ${e.limit}; paging on until an empty page`,
        level: "debug",
      };
    case "dicomweb.search.fallback":
      return { line: `! per-study searches: ${e.reason}`, level: "warn" };
    case "dicomweb.negotiated":
      return { line: `  retrieving as ${e.accept} (${e.reason})`, level: "debug" };
    case "dicomweb.progress": {
      const secs = e.elapsedMs / 1000;
      const parts = [
        `dicomweb: ${e.downloaded} downloaded, ${e.skipped} already here of ${e.listed}${e.listingDone ? "" : "+"} listed`,
        `${(e.bytes / MiB).toFixed(1)} MiB`,
        `${secs > 0 ? (e.downloaded / secs).toFixed(0) : "0"} instances/s`,
      ];
      if (e.failed > 0) parts.push(`${e.failed} failed/refused`);
      return { status: parts.join(" · ") };
    }
    case "dicomweb.refused":
      return { line: `! refused ${JSON.stringify(e.name)}: ${e.reason}`, level: "warn" };
    case "dicomweb.failed":
      return { line: `✖ failed ${e.name}: ${e.reason}`, level: "error" };
    case "dicomweb.retry":
      return { line: `  retry ${e.name} (attempt ${e.attempt}, in ${e.delayMs} ms): ${e.reason}`, level: "debug" };
    default:
      return undefined;
  }
};
