import type { StartExportEvent } from "../pipeline/start-export.ts";
import type { AnyEvent, Formatter, Rendered } from "./output.ts";

/** Human rendering of the export starter's events (adoption of an export an earlier attempt started). */
export const formatWorkflowEvent: Formatter = (event: AnyEvent): Rendered | undefined => {
  const e = event as StartExportEvent;
  switch (e.kind) {
    case "export.adopted":
      return { line: `  found ${e.operation} for ${e.store} (${e.reason}); not starting another export` };
    case "export.retry":
      return {
        line: `  starting the export of ${e.store} failed (attempt ${e.attempt}): ${e.error}; checking whether it started anyway`,
        level: "warn",
      };
    case "export.filter":
      return {
        line: `  filter of ${e.store}: ${e.paths} path${e.paths === 1 ? "" : "s"} in ${e.uri}${e.uploaded ? "" : " (already there)"}`,
      };
    default:
      return undefined;
  }
};
