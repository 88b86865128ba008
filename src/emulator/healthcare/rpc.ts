import { ApiError } from "../http-util.ts";

/**
 * The google.rpc error envelopes of the Healthcare API (`{"error":{"code","message","status"}}`)
 * and its list paging, shared by the resource routes.
 */

export function invalidArgument(message: string): ApiError {
  return new ApiError(400, "invalid", message, { rpcStatus: "INVALID_ARGUMENT" });
}

export function notFound(message: string): ApiError {
  return new ApiError(404, "notFound", message, { rpcStatus: "NOT_FOUND" });
}

export function alreadyExists(message: string): ApiError {
  return new ApiError(409, "alreadyExists", message, { rpcStatus: "ALREADY_EXISTS" });
}

export function failedPrecondition(message: string): ApiError {
  return new ApiError(400, "failedPrecondition", message, { rpcStatus: "FAILED_PRECONDITION" });
}

/** The real API's answer to an unknown JSON field: 400 with a BadRequest field violation. */
export function rejectUnknown(body: Record<string, unknown>, allowed: readonly string[], path: string): void {
  for (const key of Object.keys(body)) {
    if (allowed.includes(key)) continue;
    const msg = `Invalid JSON payload received. Unknown name "${key}"${path === "" ? "" : ` at '${path.slice(0, -1)}'`}: Cannot find field.`;
    throw new ApiError(400, "invalid", msg, {
      rpcStatus: "INVALID_ARGUMENT",
      details: [
        {
          "@type": "type.googleapis.com/google.rpc.BadRequest",
          fieldViolations: [{ field: `${path}${key}`, description: msg }],
        },
      ],
    });
  }
}

/** An object-valued field of a request body (absent: undefined; anything else: 400). */
export function objectField(body: Record<string, unknown>, key: string): Record<string, unknown> | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw invalidArgument(`Invalid value at '${key}': expected an object`);
  return v as Record<string, unknown>;
}

/** Resource ids of datasets and stores: letters, digits, `_`, `-`, `.`, 1–256 characters. */
export const RESOURCE_ID = /^[\p{L}\p{N}_.-]{1,256}$/u;

/**
 * One page of a list: `pageSize` (default and cap `max`), `pageToken` an opaque token naming the
 * last item of the previous page, so a page stays right when items are added or deleted between
 * calls. Items must be sorted by `key`.
 */
export function pageOf<T>(
  items: readonly T[],
  params: URLSearchParams,
  key: (t: T) => string,
  max = 1000,
  dflt = 100,
): { page: T[]; nextPageToken?: string } {
  const sizeRaw = params.get("pageSize");
  const size = sizeRaw === null || sizeRaw === "" || sizeRaw === "0" ? dflt : Number(sizeRaw);
  if (!Number.isInteger(size) || size < 0) throw invalidArgument(`invalid pageSize "${sizeRaw}"`);
  const token = params.get("pageToken") ?? "";
  let after: string | undefined;
  if (token !== "") {
    after = Buffer.from(token, "base64url").toString("utf8");
    if (!after.startsWith("after:")) throw invalidArgument(`invalid pageToken "${token}"`);
    after = after.slice("after:".length);
  }
  const rest = after === undefined ? items : items.filter((t) => key(t) > after);
  const page = rest.slice(0, Math.min(size, max));
  return rest.length > page.length
    ? { page, nextPageToken: Buffer.from(`after:${key(page.at(-1)!)}`).toString("base64url") }
    : { page };
}
