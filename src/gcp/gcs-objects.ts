import { HttpError, UsageError } from "../core/errors.ts";
import type { HttpClient } from "../net/http-client.ts";
import type { RemoteObject, RemoteSource } from "../mirror/ports.ts";

interface ListPage {
  items?: Array<{ name?: unknown; size?: unknown; generation?: unknown; crc32c?: unknown; md5Hash?: unknown }>;
  nextPageToken?: string;
}

/**
 * The mirror's source over the raw GCS JSON API (no SDK on the hot path): listing pages of 1000
 * with a `fields` mask, media downloads pinned to the listed generation on a keep-alive pool.
 */
export function gcsSource(client: HttpClient, storageBase: string): RemoteSource {
  const base = storageBase.replace(/\/+$/, "");
  return {
    async *listPages(bucket, prefix, signal) {
      let pageToken: string | undefined;
      do {
        const page = checkPage(
          await client
            .json<unknown>("GET", `${base}/storage/v1/b/${encodeURIComponent(bucket)}/o`, {
              query: {
                prefix,
                maxResults: 1000,
                pageToken,
                fields: "nextPageToken,items(name,size,generation,crc32c,md5Hash)",
              },
              ...(signal === undefined ? {} : { signal }),
            })
            .catch((err: unknown) => {
              throw err instanceof HttpError && err.status === 404 ? noSuchBucket(bucket, err) : err;
            }),
          pageToken,
        );
        yield (page.items ?? []).map(toRemote);
        pageToken = page.nextPageToken;
      } while (pageToken !== undefined && pageToken !== "");
    },
    async open(bucket, object, signal) {
      const res = await client.stream(
        "GET",
        `${base}/download/storage/v1/b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(object.name)}`,
        {
          query: { alt: "media", generation: object.generation },
          ...(signal === undefined ? {} : { signal }),
        },
      );
      return res.body;
    },
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
function checkPage(page: unknown, previousToken: string | undefined): ListPage {
  if (typeof page !== "object" || page === null || Array.isArray(page)) {
    throw new Error(
      `malformed object listing: expected a JSON object, got ${page === undefined ? "an empty body" : JSON.stringify(page).slice(0, 100)}`,
    );
  }
  const p = page as { items?: unknown; nextPageToken?: unknown };
  if (p.items !== undefined && !Array.isArray(p.items))
    throw new Error(`malformed object listing: "items" is ${typeof p.items}, not an array`);
  if (p.nextPageToken !== undefined && typeof p.nextPageToken !== "string")
    throw new Error(`malformed object listing: "nextPageToken" is ${typeof p.nextPageToken}, not a string`);
  if (p.nextPageToken !== undefined && p.nextPageToken !== "" && p.nextPageToken === previousToken)
    throw new Error(
      "malformed object listing: the server returned the same nextPageToken again (it would list forever)",
    );
  return p as ListPage;
}

function toRemote(item: NonNullable<ListPage["items"]>[number]): RemoteObject {
  if (
    typeof item.name !== "string" ||
    typeof item.generation !== "string" ||
    (typeof item.size !== "string" && typeof item.size !== "number")
  ) {
    throw new Error(`malformed object listing entry: ${JSON.stringify(item).slice(0, 200)}`);
  }
  const size = Number(item.size);
  if (!Number.isSafeInteger(size) || size < 0) throw new Error(`malformed size for ${item.name}: ${String(item.size)}`);
  return {
    name: item.name,
    size,
    generation: item.generation,
    ...(typeof item.crc32c === "string" ? { crc32c: item.crc32c } : {}),
    ...(typeof item.md5Hash === "string" ? { md5Hash: item.md5Hash } : {}),
  };
}
