import { spawn, type ChildProcess } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import path from "node:path";

/** Orthanc's DICOMweb plugin as Debian installs it. */
export const DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface RunningOrthanc {
  readonly url: string;
  /** Orthanc's REST API with its basic auth. */
  api(pathname: string, init?: RequestInit): Promise<Response>;
  log(): string;
  stop(): Promise<void>;
}

/**
 * Starts Orthanc on loopback ports with its storage in `dir`, basic auth, the DICOMweb plugin and
 * `extra` merged into its config (e.g. `DicomWeb.Servers`); resolves once `/system` answers.
 */
export async function startOrthanc(
  binary: string,
  dir: string,
  extra: { DicomWeb?: Record<string, unknown> } = {},
): Promise<RunningOrthanc> {
  const [httpPort, dicomPort] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${httpPort}`;
  const user = "hcx";
  const password = "orthanc-stow-pw";
  const config = {
    Name: "hcexport-interop",
    StorageDirectory: path.join(dir, "db"),
    IndexDirectory: path.join(dir, "db"),
    HttpPort: httpPort,
    DicomPort: dicomPort,
    DicomServerEnabled: false,
    RemoteAccessAllowed: false,
    AuthenticationEnabled: true,
    RegisteredUsers: { [user]: password },
    Plugins: [DICOMWEB_PLUGIN],
    DicomWeb: { Enable: true, Root: "/dicom-web/", ...extra.DicomWeb },
    StableAge: 1,
  };
  const file = path.join(dir, "orthanc.json");
  await writeFile(file, JSON.stringify(config, null, 2));
  let log = "";
  const proc: ChildProcess = spawn(binary, [file], { stdio: ["ignore", "pipe", "pipe"] });
  proc.stdout!.on("data", (d: Buffer) => (log += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const auth = { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}` };
  const api = (pathname: string, init: RequestInit = {}) =>
    fetch(`${url}${pathname}`, { ...init, headers: { ...auth, ...(init.headers as Record<string, string>) } });
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGTERM");
    await exited;
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (
      await api("/system").then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    if (Date.now() > deadline || proc.exitCode !== null) {
      await stop();
      throw new Error(`Orthanc did not start:\n${log.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, api, log: () => log, stop };
}
