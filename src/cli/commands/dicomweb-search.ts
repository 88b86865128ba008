import type { CommandModule } from "yargs";
import { UsageError } from "../../core/errors.ts";
import type { CliIo, GlobalArgs } from "../context.ts";
import { createContext } from "../context.ts";

interface SearchArgs extends GlobalArgs {
  source: string;
  level: "studies" | "series" | "instances";
  filter: string[];
  include: string[];
  "page-size": number;
  limit?: number;
  format: "table" | "json" | "csv" | "ndjson";
  fuzzy: boolean;
}

/** `hcexport dicomweb search STORE|URL`: one QIDO-RS search, every page. */
export const searchCommand = (io: CliIo): CommandModule<GlobalArgs, SearchArgs> => ({
  command: "search <source>",
  describe: "QIDO-RS search at any level with filters, every page; as a table, JSON, CSV or NDJSON",
  builder: (y) =>
    y
      .positional("source", {
        type: "string",
        describe: "a DICOM store (projects/P/…/dicomStores/S) or a DICOMweb base URL",
      })
      .option("level", { choices: ["studies", "series", "instances"] as const, default: "studies" as const })
      .option("filter", {
        type: "string",
        array: true,
        default: [] as string[],
        describe:
          "KEY=VALUE match (keyword or tag): PatientID=P1, Modality=CR, StudyDate=20190101-20190630, 00100020=P*",
      })
      .option("include", {
        type: "string",
        array: true,
        default: [] as string[],
        describe: "includefield: keyword, tag or all",
      })
      .option("page-size", { type: "number", default: 1000, describe: "each request's QIDO limit" })
      .option("limit", { type: "number", describe: "at most this many results" })
      .option("format", { choices: ["table", "json", "csv", "ndjson"] as const, default: "table" as const })
      .option("fuzzy", { type: "boolean", default: false, describe: "fuzzymatching=true (person names)" }) as never,
  handler: async (args) => {
    const pageSize = args["page-size"];
    if (!(Number.isInteger(pageSize) && pageSize >= 1)) throw new UsageError("--page-size must be a whole number ≥ 1");
    if (args.limit !== undefined && !(Number.isInteger(args.limit) && args.limit >= 0))
      throw new UsageError("--limit must be a whole number ≥ 0");
    const [
      { parseFilters, parseIncludes, qidoQuery },
      { findRows },
      fmt,
      { connectDicomweb },
      { formatDicomwebEvent },
    ] = await Promise.all([
      import("../../dicomweb/query.ts"),
      import("../../dicomweb/find.ts"),
      import("../format-search.ts"),
      import("../dicomweb-connect.ts"),
      import("../format-dicomweb.ts"),
    ]);
    const query = qidoQuery(parseFilters(args.filter), parseIncludes(args.include), args.fuzzy);
    const { out } = createContext(args, io);
    out.use(formatDicomwebEvent);
    const { client, source } = connectDicomweb(args, io, 2);
    try {
      const rows = findRows(source, {
        level: args.level,
        query,
        pageSize,
        ...(args.limit === undefined ? {} : { limit: args.limit }),
        onEvent: out.emit,
        signal: io.signal,
      });
      if (args.json) {
        const all: unknown[] = [];
        for await (const r of rows) all.push(r);
        out.result("", { level: args.level, count: all.length, rows: all });
        return;
      }
      const write = (s: string) => io.stdout.write(s);
      if (args.format === "ndjson") {
        for await (const r of rows) write(`${JSON.stringify(r)}\n`);
        return;
      }
      const all: unknown[] = [];
      for await (const r of rows) all.push(r);
      if (args.format === "json") write(`${JSON.stringify(all)}\n`);
      else if (args.format === "csv") write(fmt.searchCsv(all));
      else {
        const cols = (io.stdout as { columns?: number }).columns;
        write(
          fmt.searchTable(
            all,
            io.stdout.isTTY === true && cols !== undefined && cols > 0 ? cols : Number(io.env["COLUMNS"]) || undefined,
          ),
        );
      }
    } finally {
      await client.close();
    }
  },
});
