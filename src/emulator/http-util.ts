import type { IncomingMessage, ServerResponse } from "node:http";

/** An error the emulator answers with a Google-style JSON error envelope. */
export class ApiError extends Error {
  readonly status: number;
  readonly reason: string;
  /** Healthcare/RPC-style status name (`INVALID_ARGUMENT`, …), sent as `error.status`. */
  readonly rpcStatus: string | undefined;
  readonly details: unknown[] | undefined;
  constructor(
    status: number,
    reason: string,
    message: string,
    options: { rpcStatus?: string; details?: unknown[] } = {},
  ) {
    super(message);
    this.status = status;
    this.reason = reason;
    this.rpcStatus = options.rpcStatus;
    this.details = options.details;
  }
}

const RPC_STATUS: Record<number, string> = {
  400: "INVALID_ARGUMENT",
  401: "UNAUTHENTICATED",
  403: "PERMISSION_DENIED",
  404: "NOT_FOUND",
  409: "ALREADY_EXISTS",
  412: "FAILED_PRECONDITION",
  416: "OUT_OF_RANGE",
  429: "RESOURCE_EXHAUSTED",
  500: "INTERNAL",
  501: "UNIMPLEMENTED",
  503: "UNAVAILABLE",
};

/** The JSON error body every Google API uses. */
export function errorBody(
  status: number,
  reason: string,
  message: string,
  rpcStatus?: string,
  details?: unknown[],
): unknown {
  return {
    error: {
      code: status,
      message,
      errors: [{ domain: "global", reason, message }],
      status: rpcStatus ?? RPC_STATUS[status] ?? "UNKNOWN",
      ...(details === undefined ? {} : { details }),
    },
  };
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = body === undefined ? "" : JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=UTF-8",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function sendError(res: ServerResponse, err: ApiError, headers: Record<string, string> = {}): void {
  sendJson(res, err.status, errorBody(err.status, err.reason, err.message, err.rpcStatus, err.details), headers);
}

/** Reads a request body up to `limit` bytes (413 beyond). */
export async function readBody(req: IncomingMessage, limit = 512 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new ApiError(413, "uploadTooLarge", `request body larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Parses a JSON request body; malformed JSON is a 400, an empty body is `{}`. */
export async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const body = await readBody(req, 16 * 1024 * 1024);
  if (body.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch (err) {
    throw new ApiError(
      400,
      "parseError",
      `Invalid JSON payload received. ${err instanceof Error ? err.message : ""}`.trim(),
    );
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw new ApiError(400, "invalid", "Invalid JSON payload received. Expected an object.");
  return parsed as Record<string, unknown>;
}

/** Splits a URL path into raw segments after a known prefix, decoding each (so `%2F` stays inside a segment). */
export function decodeSegment(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new ApiError(400, "invalid", `malformed percent-encoding in "${raw}"`);
  }
}
