import type { CommandModule } from "yargs";
import { UsageError } from "../../core/errors.ts";
import { parseGsUri, parseStoreName } from "../../core/resource-names.ts";
import { startExportOnce } from "../../pipeline/start-export.ts";
import { pollOperation } from "../../workflow/poll-operation.ts";
import { createContext, type CliIo, type GlobalArgs } from "../context.ts";
import { formatPipelineEvent } from "../format.ts";
import { formatWorkflowEvent } from "../format-workflow.ts";
import { createServices } from "../services.ts";

interface ExportArgs extends GlobalArgs {
  store: string;
  destination: string;
  wait: boolean;
}

/** `hcexport export STORE gs://B/PREFIX [--wait]`: start a DICOM store export. */
export const exportCommand = (io: CliIo): CommandModule<GlobalArgs, ExportArgs> => ({
  command: "export <store> <destination>",
  describe: "start a DICOM store export to gs://BUCKET/PREFIX; --wait polls it to the end",
  builder: (y) =>
    y
      .positional("store", { type: "string", describe: "projects/P/locations/L/datasets/D/dicomStores/S" })
      .positional("destination", { type: "string", describe: "gs://BUCKET/PREFIX" })
      .option("wait", {
        type: "boolean",
        default: false,
        describe: "wait for the operation to finish (exit 4 if it fails)",
      }) as never,
  handler: async (args) => {
    const store = parseStoreName(args.store, "dicomStores");
    if (!store.ok) throw new UsageError(store.error);
    const dest = parseGsUri(args.destination);
    if (!dest.ok) throw new UsageError(dest.error);
    if (dest.value.prefix === "")
      throw new UsageError(`"${args.destination}" has no prefix`, {
        hint: "export under a prefix, e.g. gs://BUCKET/train",
      });
    const { out } = createContext(args, io);
    out.use(formatWorkflowEvent).use(formatPipelineEvent);
    const services = await createServices(args, io);
    try {
      const uri = `gs://${dest.value.bucket}/${dest.value.prefix}`;
      const name = await startExportOnce(services.ports.healthcare, args.store, uri, {
        since: new Date().toISOString(),
        known: new Set(),
        maybeStarted: false,
        onEvent: out.emit,
        signal: io.signal,
      });
      if (!args.wait) {
        out.result(name, { operation: name, store: args.store, uriPrefix: uri });
        return;
      }
      out.line(`started ${name}`);
      const op = await pollOperation((n) => services.ports.healthcare.getOperation(n), name, {
        onEvent: out.emit,
        signal: io.signal,
      });
      const c = op.metadata?.counter ?? {};
      out.result(`${name}: done, ${c.success ?? "0"} exported to ${uri}`, {
        operation: name,
        store: args.store,
        uriPrefix: uri,
        done: true,
        counter: c,
      });
    } finally {
      await services.close();
    }
  },
});
