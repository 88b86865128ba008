import { HttpError, UsageError } from "../core/errors.ts";
import type { HttpClient } from "../net/http-client.ts";
import { ListingError, type RangeBody, type RemoteObject, type RemoteSource } from "../mirror/ports.ts";

interface ListPage {
  items?: Array<{
    name?: unknown;
    size?: unknown;
    generation?: unknown;
    crc32c?: unknown;
    md5Hash?: unknown;
    etag?: unknown;
    contentEncoding?: unknown;
  }>;
  nextPageToken?: string;
}

/**
 * Pages in a row without a single item before the listing is judged endless. GCS may return a
 * short or empty page now and then (deleted names, a time budget), never thousands in a row.
 */
export const MAX_EMPTY_PAGES = 1000;
/** Pages of one listing at most (1,000 names each: a billion objects). */
export const MAX_PAGES = 1_000_000;

/** The listing's `fields` mask: only what the mirror plans with. */
const LIST_FIELDS = "nextPageToken,items(name,size,generation,crc32c,md5Hash,etag,contentEncoding)";

/**
 * The mirror's source over the raw GCS JSON API (no SDK on the hot path): listing pages of 1000
 * with a `fields` mask and the next page prefetched, media downloads pinned to the listed generation on a keep-alive pool.
 */
export function gcsSource(client: HttpClient, storageBase: string): RemoteSource {
  const base = storageBase.replace(/\/+$/, "");
  return {
    async *listPages(bucket, prefix, signal) {
      const fetchPage = (pageToken: string | undefined): Promise<unknown> =>
        client
          .json<unknown>("GET", `${base}/storage/v1/b/${encodeURIComponent(bucket)}/o`, {
            query: {
              prefix,
              maxResults: 1000,
              pageToken,
              fields: LIST_FIELDS,
              // GCS indents its JSON by default: a third more bytes to send and parse per page.
              prettyPrint: false,
            },
            ...(signal === undefined ? {} : { signal }),
          })
          .catch((err: unknown) => {
            throw err instanceof HttpError && err.status === 404 ? noSuchBucket(bucket, err) : err;
          });
      // Every token seen: a server cycling A, B, A… would otherwise list forever.
      const seen = new Set<string>();
      let pages = 0;
      let emptyInRow = 0;
      let next: Promise<unknown> | undefined = fetchPage(undefined);
      while (next !== undefined) {
        const page = checkPage(await next, seen);
        next = undefined;
        const items = (page.items ?? []).map(toRemote);
        pages++;
        emptyInRow = items.length === 0 ? emptyInRow + 1 : 0;
        if (emptyInRow > MAX_EMPTY_PAGES || pages > MAX_PAGES)
          throw new ListingError(
            `malformed object listing: ${emptyInRow > MAX_EMPTY_PAGES ? `${emptyInRow} empty pages in a row` : `more than ${MAX_PAGES} pages`} and still a nextPageToken (it would list forever)`,
          );
        const token = page.nextPageToken;
        if (token !== undefined && token !== "") {
          seen.add(token);
          // The next page is on its way while this one is planned (one page ahead, never more); a
          // failure surfaces when its turn comes, after every item of this page.
          next = fetchPage(token);
          next.catch(() => {});
        }
        yield items;
      }
    },
    async open(bucket, object, signal) {
      const res = await client.stream("GET", mediaUrl(base, bucket, object), mediaOptions(object, signal));
      return res.body;
    },
    async receive(bucket, object, into, signal) {
      await client.receive("GET", mediaUrl(base, bucket, object), into, {
        ...mediaOptions(object, signal),
        name: object.name,
      });
    },
    openRange: (bucket, object, start, endInclusive, signal) =>
      openRange(client, base, bucket, object, start, endInclusive, signal),
  };
}

/** Where an object's bytes are downloaded from (`alt=media` below, with the generation). */
function mediaUrl(base: string, bucket: string, object: RemoteObject): string {
  return `${base}/download/storage/v1/b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(object.name)}`;
}

/** A media download of exactly the listed generation, as stored, with `headers` besides. */
function mediaOptions(object: RemoteObject, signal: AbortSignal | undefined, headers: Record<string, string> = {}) {
  return {
    query: { alt: "media", generation: object.generation },
    headers: {
      ...headers,
      // The stored bytes, which the listed size and hashes describe: without this GCS
      // decompresses gzip-encoded objects on the fly (decompressive transcoding).
      ...(object.contentEncoding === "gzip" ? { "accept-encoding": "gzip" } : {}),
    },
    ...(signal === undefined ? {} : { signal }),
  };
}

/** One slice of a media download, pinned to the listed generation like `open`. */
async function openRange(
  client: HttpClient,
  base: string,
  bucket: string,
  object: RemoteObject,
  start: number,
  endInclusive: number,
  signal: AbortSignal | undefined,
): Promise<RangeBody> {
  const res = await client.stream(
    "GET",
    mediaUrl(base, bucket, object),
    mediaOptions(object, signal, { range: `bytes=${start}-${endInclusive}` }),
  );
  const header = (h: string | string[] | undefined) => (Array.isArray(h) ? h[0] : h);
  return {
    status: res.status,
    contentRange: header(res.headers["content-range"]),
    generation: header(res.headers["x-goog-generation"]),
    body: res.body,
  };
}

/** Listing a bucket that does not exist (404): a configuration error naming the bucket, exit 2. */
function noSuchBucket(bucket: string, err: HttpError): UsageError {
  return new UsageError(
    `gs://${bucket} does not exist (listing it answered HTTP 404: ${err.message.split(": ").pop()})`,
    {
      hint: `check the bucket name; create it with 'hcexport bucket ensure gs://${bucket} --project PROJECT'`,
      cause: err,
    },
  );
}

/**
 * A listing page must be a JSON object whose `items` (if any) is an array and whose
 * `nextPageToken` (if any) is a new string: an empty or non-object answer is not "no objects"
 * (with --delete that would empty the destination), and a repeated token would loop forever.
 */
function checkPage(page: unknown, seen: ReadonlySet<string>): ListPage {
  if (typeof page !== "object" || page === null || Array.isArray(page)) {
    throw new ListingError(
      `malformed object listing: expected a JSON object, got ${page === undefined ? "an empty body" : JSON.stringify(page).slice(0, 100)}`,
    );
  }
  const p = page as { items?: unknown; nextPageToken?: unknown };
  if (p.items !== undefined && !Array.isArray(p.items))
    throw new ListingError(`malformed object listing: "items" is ${typeof p.items}, not an array`);
  if (p.nextPageToken !== undefined && typeof p.nextPageToken !== "string")
    throw new ListingError(`malformed object listing: "nextPageToken" is ${typeof p.nextPageToken}, not a string`);
  if (p.nextPageToken !== undefined && p.nextPageToken !== "" && seen.has(p.nextPageToken))
    throw new ListingError(
      `malformed object listing: the server returned the same nextPageToken again after ${seen.size} page(s) (it would list forever)`,
    );
  return p as ListPage;
}

function toRemote(item: NonNullable<ListPage["items"]>[number]): RemoteObject {
  if (
    typeof item.name !== "string" ||
    typeof item.generation !== "string" ||
    (typeof item.size !== "string" && typeof item.size !== "number")
  ) {
    throw new ListingError(`malformed object listing entry: ${JSON.stringify(item).slice(0, 200)}`);
  }
  const size = Number(item.size);
  if (!Number.isSafeInteger(size) || size < 0)
    throw new ListingError(`malformed size for ${item.name}: ${String(item.size)}`);
  return {
    name: item.name,
    size,
    generation: item.generation,
    ...(typeof item.crc32c === "string" ? { crc32c: item.crc32c } : {}),
    ...(typeof item.md5Hash === "string" ? { md5Hash: item.md5Hash } : {}),
    ...(typeof item.etag === "string" ? { etag: item.etag } : {}),
    ...(typeof item.contentEncoding === "string" && item.contentEncoding !== ""
      ? { contentEncoding: item.contentEncoding.trim().toLowerCase() }
      : {}),
  };
}
