import { readFile } from "node:fs/promises";
import tls from "node:tls";
import { UsageError } from "../core/errors.ts";

/**
 * Adds the certificates in a PEM file to the CAs this process trusts for every TLS connection
 * (undici's pools, the Google SDKs), on top of the system's and NODE_EXTRA_CA_CERTS's — e.g. the CA
 * an `hcexport emulator --tls` printed. Returns how many certificates were added.
 */
export async function trustCaFile(file: string): Promise<number> {
  let pem: string;
  try {
    pem = await readFile(file, "utf8");
  } catch (err) {
    throw new UsageError(`--ca-cert ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
      hint: "give the CA file the server printed (hcexport emulator --tls prints its path)",
    });
  }
  const certs = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (certs.length === 0) throw new UsageError(`--ca-cert ${file}: no PEM certificate in the file`);
  trustCaPems(certs);
  return certs.length;
}

/** Adds PEM certificates to this process's default CAs (see {@link trustCaFile}). */
export function trustCaPems(certs: readonly string[]): void {
  // tls.setDefaultCACertificates exists from Node 22.19 / 24.5; NODE_EXTRA_CA_CERTS works on any.
  const t = tls as typeof tls & {
    setDefaultCACertificates?: (certs: string[]) => void;
    getCACertificates?: (kind: "default") => string[];
  };
  if (typeof t.setDefaultCACertificates !== "function" || typeof t.getCACertificates !== "function") {
    throw new UsageError(`--ca-cert needs Node.js >= 22.19 (this is ${process.versions.node})`, {
      hint: "set NODE_EXTRA_CA_CERTS=FILE instead, or upgrade Node",
    });
  }
  const current = t.getCACertificates("default");
  const missing = certs.filter((c) => !current.includes(c));
  if (missing.length > 0) t.setDefaultCACertificates([...current, ...missing]);
}
