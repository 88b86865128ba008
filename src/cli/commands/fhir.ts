import path from "node:path";
import type { CommandModule } from "yargs";
import { HcexportError, UsageError } from "../../core/errors.ts";
import { parseStoreName } from "../../core/resource-names.ts";
import { attachmentsOf, downloadAttachment, parseResourceRef, readFhirResource } from "../../fhir/annotations.ts";
import { resolveEndpoints } from "../../gcp/endpoints.ts";
import { HttpClient } from "../../net/http-client.ts";
import { createContext, type CliIo, type GlobalArgs } from "../context.ts";
import { commandCredentials } from "../credentials.ts";

interface FhirGetArgs extends GlobalArgs {
  store: string;
  resource: string;
  attachment?: string;
}

const fhirGet = (io: CliIo): CommandModule<GlobalArgs, FhirGetArgs> => ({
  command: "get <store> <resource>",
  describe:
    "read a FHIR resource (Type/ID); with --attachment DIR, download its attachment (e.g. the SIIM annotations CSV) atomically",
  builder: (y) =>
    y
      .positional("store", { type: "string", describe: "projects/P/locations/L/datasets/D/fhirStores/S" })
      .positional("resource", {
        type: "string",
        describe: "Type/ID, e.g. DocumentReference/d70d8f3e-990a-4bc0-b11f-c87349f5d4eb",
      })
      .option("attachment", {
        type: "string",
        describe: "download the resource's attachment(s) into this directory",
      }) as never,
  handler: async (args) => {
    const store = parseStoreName(args.store, "fhirStores");
    if (!store.ok) throw new UsageError(store.error);
    const { type, id } = parseResourceRef(args.resource);
    const { out } = createContext(args, io);
    const endpoints = resolveEndpoints(args, io.env);
    const client = new HttpClient({
      auth: await commandCredentials(args, io, endpoints, { projectId: args.project }),
      signal: io.signal,
    });
    try {
      const target = {
        client,
        healthcareBase: endpoints.healthcare,
        storageBase: endpoints.storage,
        fhirStore: args.store,
        signal: io.signal,
      };
      const resource = await readFhirResource(target, type, id);
      if (args.attachment === undefined) {
        out.result(JSON.stringify(resource, null, 2), { resource });
        return;
      }
      const attachments = attachmentsOf(resource);
      if (attachments.length === 0) throw new HcexportError(`${type}/${id} has no attachment to download`);
      const dest = path.resolve(io.cwd, args.attachment);
      const fetched = [];
      for (const [i, att] of attachments.entries())
        fetched.push(
          await downloadAttachment(target, att, dest, attachments.length === 1 ? `${id}.bin` : `${id}-${i + 1}.bin`),
        );
      const lines: string[] = [];
      for (const f of fetched) {
        lines.push(`${f.path}: ${f.bytes} bytes from ${f.url}`);
        const s = f.summary;
        if (s !== undefined) {
          lines.push(
            `  SIIM annotations: ${s.images} images, ${s.imagesWithPneumothorax} with pneumothorax, ${s.masks} masks`,
          );
          if (s.malformedCount > 0) {
            lines.push(`  ${s.malformedCount} malformed row(s):`);
            for (const m of s.malformed.slice(0, 20)) lines.push(`    line ${m.line}: ${m.reason}`);
            if (s.malformedCount > 20) lines.push(`    … ${s.malformedCount - 20} more (all with --json)`);
          }
        }
      }
      out.result(lines.join("\n"), { resourceType: type, id, attachments: fetched });
    } finally {
      await client.close();
    }
  },
});

/** `hcexport fhir get STORE Type/ID [--attachment DIR]`. */
export const fhirCommand = (io: CliIo): CommandModule<GlobalArgs, GlobalArgs> => ({
  command: "fhir <command>",
  describe: "read FHIR resources and their attachments (the SIIM annotations)",
  builder: (y) => y.command(fhirGet(io)).demandCommand(1, "name an action: get") as never,
  handler: () => {},
});
