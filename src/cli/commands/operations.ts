import type { CommandModule } from "yargs";
import { UsageError } from "../../core/errors.ts";
import { parseOperationName } from "../../core/resource-names.ts";
import { pollOperation } from "../../workflow/poll-operation.ts";
import { createContext, type CliIo, type GlobalArgs } from "../context.ts";
import { formatPipelineEvent, table } from "../format.ts";
import { createServices } from "../services.ts";

interface WaitArgs extends GlobalArgs {
  operation: string;
  timeout: number;
}

const operationsWait = (io: CliIo): CommandModule<GlobalArgs, WaitArgs> => ({
  command: "wait <operation>",
  describe: "poll a long-running operation to its end (exit 4 if it failed)",
  builder: (y) =>
    y
      .positional("operation", { type: "string", describe: "projects/P/locations/L/datasets/D/operations/ID" })
      .option("timeout", {
        type: "number",
        default: 24 * 3600,
        describe: "give up waiting after this many seconds (the operation keeps running)",
      }) as never,
  handler: async (args) => {
    const parsed = parseOperationName(args.operation);
    if (!parsed.ok) throw new UsageError(parsed.error);
    const { out } = createContext(args, io);
    out.use(formatPipelineEvent);
    const services = await createServices(args, io);
    try {
      const op = await pollOperation((n) => services.ports.healthcare.getOperation(n), args.operation, {
        onEvent: out.emit,
        signal: io.signal,
        deadlineMs: args.timeout * 1000,
      });
      const c = op.metadata?.counter ?? {};
      out.result(`${args.operation}: done (${c.success ?? "0"} succeeded, ${c.failure ?? "0"} failed)`, {
        operation: op,
      });
    } finally {
      await services.close();
    }
  },
});

const operationsList = (io: CliIo): CommandModule<GlobalArgs, GlobalArgs & { dataset: string }> => ({
  command: "list <dataset>",
  describe: "list a dataset's long-running operations",
  builder: (y) => y.positional("dataset", { type: "string", describe: "projects/P/locations/L/datasets/D" }) as never,
  handler: async (args) => {
    if (!/^projects\/[^/]+\/locations\/[^/]+\/datasets\/[^/]+$/.test(args.dataset))
      throw new UsageError(`"${args.dataset}" is not a dataset name of the form projects/P/locations/L/datasets/D`);
    const { out } = createContext(args, io);
    const services = await createServices(args, io);
    try {
      const ops = await services.ports.healthcare.listOperations(args.dataset);
      const rows = [
        ["operation", "method", "created", "state"],
        ...ops.map((o) => [
          o.name.split("/").pop() ?? o.name,
          (o.metadata?.apiMethodName ?? "").split(".").pop() ?? "",
          o.metadata?.createTime ?? "",
          o.done === true ? (o.error === undefined ? "done" : `failed: ${o.error.message}`) : "running",
        ]),
      ];
      out.result(table(rows), { operations: ops });
    } finally {
      await services.close();
    }
  },
});

/** `hcexport operations wait OPERATION` and `operations list DATASET`. */
export const operationsCommand = (io: CliIo): CommandModule<GlobalArgs, GlobalArgs> => ({
  command: "operations <action>",
  describe: "wait for or list Healthcare API long-running operations",
  builder: (y) =>
    y.command(operationsWait(io)).command(operationsList(io)).demandCommand(1, "name an action: wait or list") as never,
  handler: () => {},
});
