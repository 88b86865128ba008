import { X509Certificate } from "node:crypto";
import { mkdir, mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { replaceFileAtomic } from "../core/atomic-file.ts";

/** What an HTTPS local cloud serves, and the CA file clients are pointed at. */
export interface TlsMaterial {
  /** PEM private key of the server certificate. */
  readonly key: string;
  /** PEM server certificate (signed by the CA). */
  readonly cert: string;
  /** PEM of the CA that signed `cert`: what clients trust. */
  readonly caPem: string;
  /** Where `caPem` was written (`--ca-cert`, NODE_EXTRA_CA_CERTS, rclone --ca-cert, gcloud core/custom_ca_certs_file). */
  readonly caPath: string;
}

/** The names the server certificate is valid for: the loopback addresses and localhost. */
export const TLS_SUBJECT_ALT_NAMES = ["localhost", "127.0.0.1", "::1"] as const;

const FILES = { ca: "ca.pem", cert: "server.pem", key: "server-key.pem" } as const;
const DAY_MS = 86_400_000;

/**
 * The local cloud's certificates: reused from `dir` when a valid set is there (so clients already
 * pointed at the CA keep working after a restart under `--data`), else generated — a CA and a
 * server certificate it signs, ECDSA P-256 like Google's front ends serve, for
 * {@link TLS_SUBJECT_ALT_NAMES} — and written to `dir` (default: a new temporary directory). The
 * CA's private key is never written: once the server certificate is signed it is dropped, so a CA
 * a user trusts cannot later vouch for any other name.
 */
export async function loadOrCreateTls(dir?: string, now: Date = new Date()): Promise<TlsMaterial> {
  if (dir !== undefined) {
    const reused = await reuse(dir, now);
    if (reused !== undefined) return reused;
    await mkdir(dir, { recursive: true, mode: 0o700 });
  }
  const where = dir ?? (await mkdtemp(path.join(tmpdir(), "hcexport-tls-")));
  // selfsigned (WebCrypto + @peculiar/x509) is loaded only when TLS is asked for.
  const { generate } = await import("selfsigned");
  const notBeforeDate = new Date(now.getTime() - DAY_MS);
  const notAfterDate = new Date(now.getTime() + 825 * DAY_MS);
  const ec = { keyType: "ec", curve: "P-256", algorithm: "sha256", notBeforeDate, notAfterDate } as const;
  const ca = await generate([{ name: "commonName", value: "hcexport local cloud CA" }], {
    ...ec,
    extensions: [
      { name: "basicConstraints", cA: true, pathLenConstraint: 0, critical: true },
      { name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  const server = await generate([{ name: "commonName", value: "localhost" }], {
    ...ec,
    ca: { key: ca.private, cert: ca.cert },
    extensions: [
      { name: "basicConstraints", cA: false, critical: true },
      { name: "keyUsage", digitalSignature: true, critical: true },
      { name: "extKeyUsage", serverAuth: true },
      {
        name: "subjectAltName",
        altNames: [
          { type: 2, value: "localhost" },
          { type: 7, ip: "127.0.0.1" },
          { type: 7, ip: "::1" },
        ],
      },
    ],
  });
  await replaceFileAtomic(path.join(where, FILES.key), server.private);
  await replaceFileAtomic(path.join(where, FILES.cert), server.cert);
  await replaceFileAtomic(path.join(where, FILES.ca), ca.cert);
  return { key: server.private, cert: server.cert, caPem: ca.cert, caPath: path.join(where, FILES.ca) };
}

async function reuse(dir: string, now: Date): Promise<TlsMaterial | undefined> {
  try {
    const [caPem, cert, key] = await Promise.all(
      [FILES.ca, FILES.cert, FILES.key].map((f) => readFile(path.join(dir, f), "utf8")),
    );
    const ca = new X509Certificate(caPem!);
    const leaf = new X509Certificate(cert!);
    const fresh = new Date(leaf.validTo).getTime() > now.getTime() + DAY_MS;
    if (!fresh || !leaf.verify(ca.publicKey) || leaf.checkIP("127.0.0.1") === undefined) return undefined;
    return { key: key!, cert: cert!, caPem: caPem!, caPath: path.join(dir, FILES.ca) };
  } catch {
    return undefined;
  }
}
