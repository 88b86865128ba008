/**
 * FHIR search over a store's resources (`GET {fhirStore}/fhir/{Type}?…`), pure: the matching,
 * the `searchset` Bundle and its paging through `_page_token`, as the Healthcare API pages.
 */

export type FhirResource = Record<string, unknown>;

/** Default and largest `_count` of the Healthcare API. */
export const FHIR_COUNT = { default: 100, max: 1000 } as const;

/** Search result parameters and the paging token (the rest are search parameters). */
const CONTROL = new Set(["_count", "_page_token", "_sort", "_total", "_elements", "_summary", "_format", "_pretty"]);

/** Parameters the emulator matches on; under `Prefer: handling=strict` any other is a 400. */
const SUPPORTED = new Set(["_id", "status", "gender", "identifier", "subject", "patient", "family", "name"]);

export class FhirSearchError extends Error {
  override readonly name = "FhirSearchError";
}

/**
 * Searches `resources` (all of the store, any type) for `type` with `params`; `selfUrl` is the
 * request URL without `_page_token`, `resourceBase` the store's `…/fhir` URL.
 */
export function fhirSearch(
  resources: Iterable<FhirResource>,
  type: string,
  params: URLSearchParams,
  selfUrl: string,
  resourceBase: string,
  strict: boolean,
): FhirResource {
  const count = parseCount(params.get("_count"));
  const offset = parseToken(params.get("_page_token"));
  const filters: Array<[string, string[]]> = [];
  for (const [key, value] of params) {
    if (CONTROL.has(key)) continue;
    const name = key.split(":")[0]!;
    if (!SUPPORTED.has(name)) {
      if (strict) throw new FhirSearchError(`unsupported search parameter "${key}" for ${type}`);
      continue;
    }
    filters.push([name, value.split(",")]);
  }
  const matches = [...resources]
    .filter((r) => r["resourceType"] === type && filters.every(([n, vs]) => vs.some((v) => matchOne(r, n, v))))
    .sort((a, b) => String(a["id"]).localeCompare(String(b["id"])));
  const page = matches.slice(offset, offset + count);
  const link: { relation: string; url: string }[] = [{ relation: "search", url: selfUrl }];
  if (offset + count < matches.length) {
    const next = new URL(selfUrl);
    next.searchParams.set("_page_token", Buffer.from(`o:${offset + count}`).toString("base64url"));
    link.push({ relation: "next", url: next.toString() });
  }
  return {
    resourceType: "Bundle",
    type: "searchset",
    total: matches.length,
    link,
    entry: page.map((r) => ({
      fullUrl: `${resourceBase}/${type}/${String(r["id"])}`,
      resource: r,
      search: { mode: "match" },
    })),
  };
}

function matchOne(r: FhirResource, name: string, value: string): boolean {
  switch (name) {
    case "_id":
      return r["id"] === value;
    case "status":
    case "gender":
      return r[name] === value;
    case "identifier": {
      const [system, code] = value.includes("|") ? value.split("|", 2) : [undefined, value];
      return ((r["identifier"] ?? []) as { system?: string; value?: string }[]).some(
        (i) => i.value === code && (system === undefined || system === "" || i.system === system),
      );
    }
    case "subject":
    case "patient": {
      const ref = (r["subject"] as { reference?: string } | undefined)?.reference ?? "";
      return ref === value || ref === `Patient/${value}` || ref.endsWith(`/${value}`);
    }
    case "family":
    case "name": {
      const names = (r["name"] ?? []) as { family?: string; given?: string[]; text?: string }[];
      const v = value.toLowerCase();
      return names.some((n) =>
        [n.family, n.text, ...(name === "name" ? (n.given ?? []) : [])].some((s) => s?.toLowerCase().startsWith(v)),
      );
    }
    default:
      return false;
  }
}

function parseCount(raw: string | null): number {
  if (raw === null || raw === "") return FHIR_COUNT.default;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new FhirSearchError(`invalid _count "${raw}": expected a positive integer`);
  return Math.min(n, FHIR_COUNT.max);
}

function parseToken(raw: string | null): number {
  if (raw === null || raw === "") return 0;
  const text = Buffer.from(raw, "base64url").toString("utf8");
  const m = /^o:(\d+)$/.exec(text);
  if (m === null) throw new FhirSearchError(`invalid _page_token "${raw}": pass the url of the Bundle's next link`);
  return Number(m[1]);
}
