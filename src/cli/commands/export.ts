import type { CommandModule } from "yargs";
import { UsageError } from "../../core/errors.ts";
import { parseGsUri, parseStoreName } from "../../core/resource-names.ts";
import { readFilterFile } from "../../config/load.ts";
import type { EventSink } from "../../core/events.ts";
import { filterFileContent, filterObjectName, parseExportMimeType } from "../../gcp/export-options.ts";
import type { BucketAdmin } from "../../gcp/storage-admin.ts";
import { startExportOnce, type StartExportEvent } from "../../pipeline/start-export.ts";
import { pollOperation } from "../../workflow/poll-operation.ts";
import { createContext, type CliIo, type GlobalArgs } from "../context.ts";
import { formatPipelineEvent } from "../format.ts";
import { formatWorkflowEvent } from "../format-workflow.ts";
import { createServices } from "../services.ts";
import { formatBigQueryEvent, runBigQueryExport, type BigQueryExportArgs } from "./export-bigquery.ts";

type ExportArgs = BigQueryExportArgs & { "mime-type"?: string; "filter-file"?: string };

/** Puts the filter file beside the export, content-addressed (a rerun reuses it); its gs:// URI. */
async function uploadFilter(
  buckets: BucketAdmin,
  store: string,
  dest: { bucket: string; prefix: string },
  paths: readonly string[],
  emit: EventSink<StartExportEvent>,
): Promise<string> {
  const content = filterFileContent(paths);
  const name = filterObjectName(dest.prefix, content);
  const { created } = await buckets.ensureObject!(dest.bucket, name, content, "text/plain");
  const uri = `gs://${dest.bucket}/${name}`;
  emit({ kind: "export.filter", store, uri, paths: new Set(paths).size, uploaded: created });
  return uri;
}

/** `hcexport export STORE gs://B/PREFIX|bq://P.D.T [--wait]`: start a DICOM store export. */
export const exportCommand = (io: CliIo): CommandModule<GlobalArgs, ExportArgs> => ({
  command: "export <store> <destination>",
  describe:
    "start a DICOM store export to gs://BUCKET/PREFIX or BigQuery bq://PROJECT.DATASET.TABLE; --wait polls it to the end",
  builder: (y) =>
    y
      .positional("store", { type: "string", describe: "projects/P/locations/L/datasets/D/dicomStores/S" })
      .positional("destination", { type: "string", describe: "gs://BUCKET/PREFIX or bq://PROJECT.DATASET.TABLE" })
      .option("wait", {
        type: "boolean",
        default: false,
        describe: "wait for the operation to finish (exit 4 if it fails)",
      })
      .option("write-disposition", {
        type: "string",
        describe: "bq:// only: WRITE_EMPTY (default: fail if the table has rows), WRITE_TRUNCATE or WRITE_APPEND",
      })
      .option("mime-type", {
        type: "string",
        describe:
          "gs:// only: what each instance becomes: application/dicom[; transfer-syntax=…] (.dcm), image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50 (.jpg), image/png (.png), application/octet-stream (no extension)",
      })
      .option("filter-file", {
        type: "string",
        describe:
          "gs:// only: export only the studies/series listed in FILE (/studies/UID[/series/UID], one a line); uploaded to gs://BUCKET/.hcexport/filters/ and sent as the v1beta1 filterConfig",
      })
      .option("grant-iam", {
        type: "boolean",
        default: false,
        describe: "bq:// only: grant the service agent roles/bigquery.dataEditor + jobUser on the project if missing",
      })
      .option("service-agent", {
        type: "string",
        describe: "bq:// only: the store project's Healthcare service agent (default: from its project number)",
      })
      .option("location", { type: "string", describe: "bq:// only: location of a dataset hcexport creates" })
      .option("bigquery-endpoint", {
        type: "string",
        describe: "BigQuery base URL (default https://bigquery.googleapis.com; the local cloud's with --emulator)",
      }) as never,
  handler: async (args) => {
    if (args.destination.startsWith("bq://") && (args["mime-type"] ?? args["filter-file"]) !== undefined)
      throw new UsageError("--mime-type and --filter-file apply to gs:// destinations only");
    const mime = args["mime-type"] === undefined ? undefined : parseExportMimeType(args["mime-type"]);
    if (mime !== undefined && !mime.ok) throw new UsageError(`--mime-type: ${mime.error}`);
    if (args.destination.startsWith("bq://")) {
      const { out } = createContext(args, io);
      out.use(formatWorkflowEvent).use(formatPipelineEvent).use(formatBigQueryEvent);
      const services = await createServices(args, io);
      try {
        await runBigQueryExport(args, io, out, services);
      } finally {
        await services.close();
      }
      return;
    }
    const bqOnly = (["write-disposition", "service-agent", "location", "bigquery-endpoint"] as const).filter(
      (k) => args[k] !== undefined,
    );
    if (args["grant-iam"]) bqOnly.push("grant-iam" as never);
    if (bqOnly.length > 0)
      throw new UsageError(
        `--${bqOnly.join(", --")} applies to bq:// destinations only`,
        args["grant-iam"]
          ? { hint: "for the bucket's IAM use 'hcexport iam grant gs://BUCKET --service-agent …'" }
          : {},
      );
    const store = parseStoreName(args.store, "dicomStores");
    if (!store.ok) throw new UsageError(store.error);
    const dest = parseGsUri(args.destination);
    if (!dest.ok) throw new UsageError(dest.error);
    if (dest.value.prefix === "")
      throw new UsageError(`"${args.destination}" has no prefix`, {
        hint: "export under a prefix, e.g. gs://BUCKET/train",
      });
    const filter =
      args["filter-file"] === undefined
        ? undefined
        : await readFilterFile("--filter-file", io.cwd, args["filter-file"]);
    const { out } = createContext(args, io);
    out.use(formatWorkflowEvent).use(formatPipelineEvent);
    const services = await createServices(args, io);
    try {
      const uri = `gs://${dest.value.bucket}/${dest.value.prefix}`;
      const filterUri =
        filter === undefined
          ? undefined
          : await uploadFilter(services.ports.buckets, args.store, dest.value, filter, out.emit);
      const name = await startExportOnce(services.ports.healthcare, args.store, uri, {
        since: new Date().toISOString(),
        known: new Set(),
        maybeStarted: false,
        exportOptions: {
          ...(mime === undefined ? {} : { mimeType: mime.value.value }),
          ...(filterUri === undefined ? {} : { filterUri }),
        },
        onEvent: out.emit,
        signal: io.signal,
      });
      if (!args.wait) {
        out.result(name, {
          operation: name,
          store: args.store,
          uriPrefix: uri,
          mimeType: mime?.value.value,
          filter: filterUri,
        });
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
        mimeType: mime?.value.value,
        filter: filterUri,
        done: true,
        counter: c,
      });
    } finally {
      await services.close();
    }
  },
});
