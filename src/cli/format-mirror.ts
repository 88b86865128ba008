import type { MirrorEvent } from "../mirror/mirror.ts";
import type { AnyEvent, Formatter, Rendered } from "./output.ts";

const MiB = 1024 * 1024;

/** Human rendering of mirror events: a status line with bytes, files, rate and ETA; a line per problem. */
export const formatMirrorEvent: Formatter = (event: AnyEvent): Rendered | undefined => {
  if (!event.kind.startsWith("mirror.")) return undefined;
  const e = event as MirrorEvent;
  switch (e.kind) {
    case "mirror.start":
      return { status: `mirror${e.dryRun ? " (dry run)" : ""}: listing ${e.source} → ${e.dest}` };
    case "mirror.progress":
      return { status: progressText(e) };
    case "mirror.refused":
      return { line: `! refused ${JSON.stringify(e.name)}: ${e.reason}`, level: "warn" };
    case "mirror.manifest-reset":
      return {
        line:
          e.movedTo === undefined
            ? `! ${e.file} is unreadable (${e.reason}); ignored, every file is checked by hashing it`
            : `! ${e.file} was unreadable (${e.reason}); kept as ${e.movedTo}, rebuilding it by hashing the files on disk`,
        level: "warn",
      };
    case "mirror.failed":
      return { line: `✖ failed ${JSON.stringify(e.name)}: ${e.reason}`, level: "error" };
    case "mirror.retry":
      return { line: `  retry ${e.name} (attempt ${e.attempt}, in ${e.delayMs} ms): ${e.reason}`, level: "debug" };
    case "mirror.file":
      if (e.action === "would-download") return { line: `would download ${e.name} (${e.bytes} bytes)` };
      return e.action === "downloaded" ? { line: `downloaded ${e.name}`, level: "debug" } : undefined;
    case "mirror.delete":
      return {
        line: e.action === "would-delete" ? `would delete ${e.path}` : `deleted ${e.path}`,
        level: e.action === "deleted" ? "debug" : "info",
      };
    case "mirror.delete-skipped":
      return { line: `! not deleting ${e.pending} destination-only file(s): ${e.reason}`, level: "warn" };
    case "mirror.done":
      return undefined;
    default:
      return undefined;
  }
};

/** `412/10000 files · 61.8/1500.0 MiB · 95.3 MiB/s · ETA 15 s` (ETA once the listing is complete). */
export function progressText(e: Extract<MirrorEvent, { kind: "mirror.progress" }>): string {
  const secs = e.elapsedMs / 1000;
  const rate = secs > 0 ? e.bytes / secs : 0;
  const parts = [
    `mirror: ${e.downloaded} downloaded, ${e.skipped} up to date of ${e.listed}${e.listingDone ? "" : "+"} listed`,
    `${(e.bytes / MiB).toFixed(1)}${e.listingDone ? `/${(e.plannedBytes / MiB).toFixed(1)}` : ""} MiB`,
    `${(rate / MiB).toFixed(1)} MiB/s`,
  ];
  if (e.failed > 0) parts.push(`${e.failed} failed/refused`);
  if (e.listingDone && rate > 0 && e.plannedBytes > e.bytes)
    parts.push(`ETA ${Math.ceil((e.plannedBytes - e.bytes) / rate)} s`);
  return parts.join(" · ");
}
