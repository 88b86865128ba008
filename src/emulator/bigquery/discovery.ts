import { readFileSync, realpathSync } from "node:fs";
import path from "node:path";

/**
 * The BigQuery v2 discovery document, for the `bq` CLI: pointed at a non-Google `--api`, bq
 * fetches `{api}/$discovery/rest?version=v2` and builds its client from it. The document is the
 * one the Google Cloud SDK ships with bq (`platform/bq/discovery_next/bigquery.json`), served with
 * `rootUrl`/`baseUrl` rewritten to the local cloud; `HCEXPORT_BQ_DISCOVERY` names another file.
 */
export function discoveryCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const out: string[] = [];
  if (env["HCEXPORT_BQ_DISCOVERY"]) out.push(env["HCEXPORT_BQ_DISCOVERY"]);
  for (const dir of (env["PATH"] ?? "").split(path.delimiter)) {
    if (dir === "") continue;
    try {
      // …/google-cloud-sdk/bin/bq → …/google-cloud-sdk/platform/bq/discovery_next/bigquery.json
      const bq = realpathSync(path.join(dir, "bq"));
      out.push(path.join(path.dirname(bq), "..", "platform", "bq", "discovery_next", "bigquery.json"));
    } catch {
      // no bq here
    }
  }
  out.push("/usr/lib/google-cloud-sdk/platform/bq/discovery_next/bigquery.json");
  out.push("/usr/share/google-cloud-sdk/platform/bq/discovery_next/bigquery.json");
  return [...new Set(out)];
}

let cached: { source: string; doc: Record<string, unknown> } | null | undefined;

/** The discovery document rewritten for `baseUrl`, or undefined when no SDK copy is found. */
export function discoveryDocument(baseUrl: string): { text: string; source: string } | undefined {
  if (cached === undefined) {
    cached = null;
    for (const file of discoveryCandidates()) {
      try {
        cached = { source: file, doc: JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown> };
        break;
      } catch {
        // try the next one
      }
    }
  }
  if (cached === null) return undefined;
  const root = `${baseUrl.replace(/\/+$/, "")}/`;
  const doc = { ...cached.doc, rootUrl: root, mtlsRootUrl: root, baseUrl: `${root}bigquery/v2/` };
  return { text: JSON.stringify(doc), source: cached.source };
}
