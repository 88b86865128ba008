import type { Argv, CommandModule } from "yargs";
import { UsageError } from "../../core/errors.ts";
import { parseGsUri, serviceAgentFor } from "../../core/resource-names.ts";
import { projectNumber } from "../../gcp/resource-manager.ts";
import { ensureExportRole } from "../../pipeline/export-and-mirror.ts";
import { EXPORT_ROLE } from "../../workflow/iam-policy.ts";
import { createContext, type CliIo, type GlobalArgs } from "../context.ts";
import { createServices, type Services } from "../services.ts";

interface IamArgs extends GlobalArgs {
  bucket: string;
  "service-agent"?: string;
  "source-project"?: string;
}

const SERVICE_AGENT = /^service-\d+@gcp-sa-healthcare\.iam\.gserviceaccount\.com$/;

const iamOptions = <T>(y: Argv<T>) =>
  y
    .positional("bucket", { type: "string", describe: "gs://BUCKET" })
    .option("service-agent", {
      type: "string",
      describe: "service-N@gcp-sa-healthcare.iam.gserviceaccount.com of the project that owns the DICOM store",
    })
    .option("source-project", {
      type: "string",
      describe: "derive the service agent from this project's number (needs resourcemanager.projects.get on it)",
    });

/** The bucket and service agent an `iam` command is about. */
async function target(args: IamArgs, services: Services): Promise<{ bucket: string; agent: string }> {
  const uri = parseGsUri(args.bucket);
  if (!uri.ok) throw new UsageError(uri.error);
  let agent = args["service-agent"];
  if (agent === undefined && args["source-project"] !== undefined)
    agent = serviceAgentFor(
      await projectNumber(services.client, services.endpoints.resourceManager, args["source-project"]),
    );
  if (agent === undefined)
    throw new UsageError("name the Healthcare service agent", {
      hint: "pass --service-agent service-N@gcp-sa-healthcare.iam.gserviceaccount.com or --source-project PROJECT",
    });
  agent = agent.replace(/^serviceAccount:/, "");
  if (!SERVICE_AGENT.test(agent))
    throw new UsageError(
      `"${agent}" is not a Healthcare service agent (service-PROJECT_NUMBER@gcp-sa-healthcare.iam.gserviceaccount.com)`,
    );
  return { bucket: uri.value.bucket, agent };
}

const iamCheck = (io: CliIo): CommandModule<GlobalArgs, IamArgs> => ({
  command: "check <bucket>",
  describe: `exit 0 if the service agent holds ${EXPORT_ROLE} on the bucket, exit 3 (with the fix) if not`,
  builder: (y) => iamOptions(y) as never,
  handler: async (args) => {
    const { out } = createContext(args, io);
    const services = await createServices(args, io);
    try {
      const { bucket, agent } = await target(args, services);
      // Without grant, the mechanism `run` uses throws the exit-3 error with the fix.
      await ensureExportRole(services.ports.buckets, bucket, agent, false);
      out.result(`gs://${bucket}: ${agent} holds ${EXPORT_ROLE}`, {
        bucket,
        serviceAgent: agent,
        role: EXPORT_ROLE,
        ok: true,
      });
    } finally {
      await services.close();
    }
  },
});

const iamGrant = (io: CliIo): CommandModule<GlobalArgs, IamArgs> => ({
  command: "grant <bucket>",
  describe: `grant the service agent ${EXPORT_ROLE} (etag read-modify-write; other bindings untouched)`,
  builder: (y) => iamOptions(y) as never,
  handler: async (args) => {
    const { out } = createContext(args, io);
    const services = await createServices(args, io);
    try {
      const { bucket, agent } = await target(args, services);
      const granted = await ensureExportRole(services.ports.buckets, bucket, agent, true);
      out.result(
        granted
          ? `gs://${bucket}: granted ${EXPORT_ROLE} to ${agent}`
          : `gs://${bucket}: ${agent} already holds ${EXPORT_ROLE}; nothing changed`,
        { bucket, serviceAgent: agent, role: EXPORT_ROLE, granted },
      );
    } finally {
      await services.close();
    }
  },
});

/** `hcexport iam check|grant gs://B --service-agent EMAIL` (or `--source-project P`). */
export const iamCommand = (io: CliIo): CommandModule<GlobalArgs, GlobalArgs> => ({
  command: "iam <action>",
  describe: `check or grant the Healthcare service agent's ${EXPORT_ROLE} on a bucket`,
  builder: (y) =>
    y.command(iamCheck(io)).command(iamGrant(io)).demandCommand(1, "name an action: check or grant") as never,
  handler: () => {},
});
