import path from "node:path";
import type { CommandModule } from "yargs";
import { UsageError } from "../../core/errors.ts";
import { createContext, type CliIo, type GlobalArgs } from "../context.ts";

interface GetArgs extends GlobalArgs {
  source: string;
  target: string;
  dir: string;
  rendered?: "png" | "jpeg";
  metadata: boolean;
  concurrency: number;
}

/** `hcexport dicomweb get STORE|URL studies/S[/series/SE[/instances/I[/frames/N]]] DIR`. */
export const getCommand = (io: CliIo): CommandModule<GlobalArgs, GetArgs> => ({
  command: "get <source> <target> <dir>",
  describe: "WADO-RS one study, series, instance or frames (raw or --rendered) into DIR, each part its own file",
  builder: (y) =>
    y
      .positional("source", {
        type: "string",
        describe: "a DICOM store (projects/P/…/dicomStores/S) or a DICOMweb base URL",
      })
      .positional("target", { type: "string", describe: "studies/S[/series/SE[/instances/I[/frames/N[,M…]]]]" })
      .positional("dir", { type: "string", describe: "local destination directory" })
      .option("rendered", {
        choices: ["png", "jpeg"] as const,
        describe: "rendered images (…/rendered): instances as S/SE/I.png|jpg, frames as S/SE/I/frames/N.png|jpg",
      })
      .option("metadata", { type: "boolean", default: false, describe: "also write the DICOM JSON as …/metadata.json" })
      .option("concurrency", { type: "number", default: 8, describe: "parallel requests (rendered study/series)" })
      .epilog(
        "Files: instances DIR/S/SE/I.dcm; frames DIR/S/SE/I/frames/N.raw (or .jpg/.png/.jls/.jp2 by the part's type); metadata DIR/S[/SE[/I]]/metadata.json.",
      ) as never,
  handler: async (args) => {
    if (!(Number.isInteger(args.concurrency) && args.concurrency >= 1 && args.concurrency <= 64))
      throw new UsageError("--concurrency must be an integer between 1 and 64");
    const [{ parseGetPath }, { get }, { connectDicomweb, finishDicomweb }, { formatDicomwebEvent }] = await Promise.all(
      [
        import("../../dicomweb/get-target.ts"),
        import("../../dicomweb/get.ts"),
        import("../dicomweb-connect.ts"),
        import("../format-dicomweb.ts"),
      ],
    );
    const target = parseGetPath(args.target);
    const { out } = createContext(args, io);
    out.use(formatDicomwebEvent);
    const dest = path.resolve(io.cwd, args.dir);
    const { client, source, label } = connectDicomweb(args, io, args.concurrency + 1);
    try {
      const summary = await get({
        source,
        label,
        dest,
        target,
        ...(args.rendered === undefined ? {} : { rendered: args.rendered }),
        metadata: args.metadata,
        concurrency: args.concurrency,
        onEvent: out.emit,
        signal: io.signal,
      });
      finishDicomweb(out, summary, dest, "item(s)");
    } finally {
      await client.close();
    }
  },
});
