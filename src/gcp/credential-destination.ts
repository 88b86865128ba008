import { BlockList, isIP } from "node:net";

/**
 * Where Google credentials may go — the one decision every outgoing request that can carry them
 * asks (the HTTP client's ADC headers, the Storage SDK, FHIR attachment downloads, DICOMweb
 * against a store). Pure: no I/O, no DNS.
 *
 * Rules (README "Credentials"):
 * 1. `https:` to a Google API host (`googleapis.com` or a subdomain) on the default port 443;
 * 2. the exact origin — scheme, host and port, default ports normalised — of a configured endpoint.
 * Anything else (another host, `http:` to a Google host, another port, `data:`/`file:`…) gets no
 * credentials. The caller decides separately whether credentials are used at all (never with
 * `--emulator`) and whether a configured plain-`http:` endpoint is acceptable (`insecureEndpoints`).
 */
export function mayCarryGoogleCredentials(url: string | URL, configured: readonly string[]): boolean {
  const u = parse(url);
  if (u === undefined) return false;
  if (u.username !== "" || u.password !== "") return false;
  if (u.protocol === "https:" && u.port === "" && isGoogleApiHost(u.hostname)) return true;
  if (u.protocol !== "https:" && u.protocol !== "http:") return false;
  return configured.some((c) => {
    const e = parse(c);
    return e !== undefined && (e.protocol === "https:" || e.protocol === "http:") && e.origin === u.origin;
  });
}

/** `googleapis.com` and its subdomains (lower-cased by URL parsing; a trailing dot is not accepted). */
export function isGoogleApiHost(hostname: string): boolean {
  return hostname === "googleapis.com" || hostname.endsWith(".googleapis.com");
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/**
 * True for a host name that can only mean this machine: `localhost`, 127.0.0.0/8 in any URL
 * spelling, `[::1]`, IPv4-mapped `[::ffff:127.x.y.z]`. Not `0.0.0.0` or `[::]` (an address to
 * listen on, whose meaning as a destination differs between systems) and not other names.
 */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (h === "localhost") return true;
  const family = isIP(h);
  return family !== 0 && LOOPBACK.check(h, family === 6 ? "ipv6" : "ipv4");
}

/** `http://` to a loopback host: traffic that never leaves this machine. */
export function isLoopbackHttp(url: string): boolean {
  const u = parse(url);
  return u !== undefined && u.protocol === "http:" && isLoopbackHost(u.hostname);
}

/** `http://` or `https://` to a loopback host (the local cloud, also when served with `--tls`). */
export function isLoopbackUrl(url: string): boolean {
  const u = parse(url);
  return u !== undefined && (u.protocol === "http:" || u.protocol === "https:") && isLoopbackHost(u.hostname);
}

/**
 * The configured endpoints over which a token would travel in clear text: `http:` to anything
 * but loopback (`http://emulator:8080`, `http://10.0.0.5`, `http://0.0.0.0:P`…).
 */
export function insecureEndpoints(endpoints: readonly string[]): string[] {
  return [
    ...new Set(endpoints.filter((e) => parse(e)?.protocol === "http:" && !isLoopbackHttp(e)).map((e) => origin(e))),
  ];
}

function origin(url: string): string {
  return parse(url)?.origin ?? url;
}

function parse(url: string | URL): URL | undefined {
  try {
    return new URL(String(url));
  } catch {
    return undefined;
  }
}
