import type { CommandModule } from "yargs";
import { UsageError } from "../../core/errors.ts";
import { parseGsUri } from "../../core/resource-names.ts";
import { createContext, type CliIo, type GlobalArgs } from "../context.ts";
import { createServices } from "../services.ts";

interface BucketArgs extends GlobalArgs {
  bucket: string;
  location: string;
  "storage-class": string;
  "uniform-access": boolean;
}

/** `hcexport bucket ensure gs://B`: create the bucket if missing; one we already own is fine. */
export const bucketCommand = (io: CliIo): CommandModule<GlobalArgs, GlobalArgs> => ({
  command: "bucket <action>",
  describe: "bucket administration (ensure)",
  builder: (y) => y.command(bucketEnsure(io)).demandCommand(1, "name an action: ensure") as never,
  handler: () => {},
});

const bucketEnsure = (io: CliIo): CommandModule<GlobalArgs, BucketArgs> => ({
  command: "ensure <bucket>",
  describe: "create gs://BUCKET if missing (location, storage class, uniform access); existing and ours = success",
  builder: (y) =>
    y
      .positional("bucket", { type: "string", describe: "gs://BUCKET" })
      .option("location", { type: "string", default: "US", describe: "bucket location, e.g. us-central1" })
      .option("storage-class", {
        type: "string",
        default: "STANDARD",
        describe: "STANDARD, NEARLINE, COLDLINE or ARCHIVE",
      })
      .option("uniform-access", {
        type: "boolean",
        default: true,
        describe: "uniform bucket-level access (IAM only, no ACLs)",
      }) as never,
  handler: async (args) => {
    const uri = parseGsUri(args.bucket);
    if (!uri.ok) throw new UsageError(uri.error);
    if (uri.value.prefix !== "") throw new UsageError(`"${args.bucket}" names a prefix; give just gs://BUCKET`);
    if (args.project === undefined)
      throw new UsageError("a new bucket belongs to a project", {
        hint: "pass --project PROJECT (or set HCEXPORT_PROJECT)",
      });
    const { out } = createContext(args, io);
    const services = await createServices(args, io);
    try {
      const name = uri.value.bucket;
      const { created } = await services.ports.buckets.ensureBucket({
        name,
        project: args.project,
        location: args.location,
        storageClass: args["storage-class"],
        uniformAccess: args["uniform-access"],
      });
      out.result(created ? `created gs://${name}` : `gs://${name} already exists and is yours`, {
        bucket: name,
        created,
      });
    } finally {
      await services.close();
    }
  },
});
