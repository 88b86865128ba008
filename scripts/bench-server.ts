/**
 * Starts the local cloud in its own process (so a benchmark's client and server do not share an
 * event loop on a 2-core machine) with one bucket of N objects of SIZE bytes under PREFIX.
 * Usage: node scripts/bench-server.ts --objects 10000 --size 150000 [--bucket B] [--prefix P]
 *        [--latency MS] [--tls]
 * Prints `listening on URL` when ready (and, with --tls, `ca certificate FILE`).
 */
import { parseArgs } from "node:util";
import { startEmulator } from "../src/emulator/server.ts";

const { values } = parseArgs({
  options: {
    objects: { type: "string", default: "10000" },
    size: { type: "string", default: "150000" },
    bucket: { type: "string", default: "bench-bucket" },
    prefix: { type: "string", default: "train" },
    latency: { type: "string", default: "0" },
    tls: { type: "boolean", default: false },
  },
});
const emu = await startEmulator({ tls: values.tls, faults: { latencyMs: Number(values.latency) } });
emu.store.createBucket({ name: values.bucket, projectNumber: "1" });
const n = Number(values.objects);
const size = Number(values.size);
for (let i = 0; i < n; i++) {
  const data = Buffer.allocUnsafe(size);
  for (let j = 0; j < size; j += 4) data.writeUInt32LE((Math.imul(i + 1, 2654435761) ^ j) >>> 0, Math.min(j, size - 4));
  const uid = `1.2.276.0.7230010.3.1.2.8323329.${i}`;
  emu.store.putObject(values.bucket, `${values.prefix}/${uid}/${uid}.3/${uid}.4.dcm`, data, "application/dicom");
}
process.stdout.write(`listening on ${emu.baseUrl}\n`);
if (emu.tls !== undefined) process.stdout.write(`ca certificate ${emu.tls.caPath}\n`);
process.on("SIGTERM", () => void emu.close().then(() => process.exit(0)));
