/**
 * Typed errors with exit codes (DESIGN §2). Every failure the user can act on is one of these;
 * the CLI maps `exitCode` to the process exit status and prints `message` and `hint`.
 */

/** Process exit codes, documented in the README. */
export const ExitCode = {
  Ok: 0,
  Failure: 1,
  Usage: 2,
  Permission: 3,
  OperationFailed: 4,
  PartialMirror: 5,
  LockHeld: 6,
  /** Stopped by SIGINT (Ctrl-C): 128 + 2, as shells report it. */
  Interrupted: 130,
  /** Stopped by SIGTERM (a scheduler, `kill`): 128 + 15. */
  Terminated: 143,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The fix for every missing or unusable Google credential, worded once for every command. */
export const CREDENTIALS_HINT =
  "run 'gcloud auth application-default login', or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file";

export interface HcexportErrorOptions {
  /** How the user can fix it, shown after the message. */
  readonly hint?: string;
  readonly cause?: unknown;
}

/** Base class: an error with an exit code and an optional fix hint. */
export class HcexportError extends Error {
  readonly exitCode: ExitCode;
  readonly hint: string | undefined;
  constructor(message: string, exitCode: ExitCode = ExitCode.Failure, options: HcexportErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.exitCode = exitCode;
    this.hint = options.hint;
  }
}

/** Bad flags, bad config, bad resource names: exit 2. */
export class UsageError extends HcexportError {
  constructor(message: string, options: HcexportErrorOptions = {}) {
    super(message, ExitCode.Usage, options);
  }
}

/** A permission or IAM problem: exit 3. */
export class PermissionError extends HcexportError {
  constructor(message: string, options: HcexportErrorOptions = {}) {
    super(message, ExitCode.Permission, options);
  }
}

/** A remote long-running operation ended in failure: exit 4. */
export class OperationFailedError extends HcexportError {
  readonly operation: string;
  readonly logsUrl: string | undefined;
  constructor(operation: string, message: string, options: HcexportErrorOptions & { logsUrl?: string } = {}) {
    super(message, ExitCode.OperationFailed, options);
    this.operation = operation;
    this.logsUrl = options.logsUrl;
  }
}

/** Some objects failed or were refused, the rest landed: exit 5. */
export class PartialFailureError extends HcexportError {
  readonly failed: number;
  constructor(message: string, failed: number, options: HcexportErrorOptions = {}) {
    super(message, ExitCode.PartialMirror, options);
    this.failed = failed;
  }
}

/** Another run holds the lock: exit 6. */
export class LockHeldError extends HcexportError {
  constructor(message: string, options: HcexportErrorOptions = {}) {
    super(message, ExitCode.LockHeld, options);
  }
}

/**
 * The run was stopped by a signal: exit 130 (SIGINT) or 143 (SIGTERM). The one wording every
 * command uses; what finished is saved, so the same command resumes. It is the abort reason of the
 * CLI's signal, so whatever a step throws while unwinding, the CLI reports this.
 */
export class InterruptedError extends HcexportError {
  readonly signal: "SIGINT" | "SIGTERM";
  constructor(signal: "SIGINT" | "SIGTERM") {
    super(
      `interrupted by ${signal}${signal === "SIGINT" ? " (Ctrl-C)" : ""}: stopped cleanly; what finished is kept, no partial files are left, and the lock is released`,
      signal === "SIGINT" ? ExitCode.Interrupted : ExitCode.Terminated,
      { hint: "run the same command again to resume where it stopped" },
    );
    this.signal = signal;
  }
}

/** The InterruptedError a signal was aborted with (the CLI's SIGINT/SIGTERM), if any. */
export function interruptionOf(signal: AbortSignal | undefined): InterruptedError | undefined {
  return signal?.aborted === true && signal.reason instanceof InterruptedError ? signal.reason : undefined;
}

/**
 * An HTTP response that was not a success. `retryAfterMs` carries a parsed `Retry-After`.
 * `url` must already be free of credentials (see `redactUrl`).
 */
export class HttpError extends HcexportError {
  readonly status: number;
  readonly reason: string | undefined;
  readonly method: string;
  readonly url: string;
  readonly retryAfterMs: number | undefined;
  constructor(init: {
    status: number;
    method: string;
    url: string;
    message: string;
    reason?: string;
    retryAfterMs?: number;
    hint?: string;
  }) {
    const code = init.status === 401 || init.status === 403 ? ExitCode.Permission : ExitCode.Failure;
    super(
      `${init.method} ${init.url}: HTTP ${init.status}: ${init.message}`,
      code,
      init.hint === undefined ? {} : { hint: init.hint },
    );
    this.status = init.status;
    this.reason = init.reason;
    this.method = init.method;
    this.url = init.url;
    this.retryAfterMs = init.retryAfterMs;
  }
}

/** Bytes received do not match the size or hash the server announced. Retryable. */
export class IntegrityError extends HcexportError {
  constructor(message: string) {
    super(message, ExitCode.Failure);
  }
}

/** A remote name that would escape or alias a path in the destination. Never retried. */
export class UnsafeNameError extends HcexportError {
  readonly remoteName: string;
  readonly reason: string;
  constructor(remoteName: string, reason: string) {
    super(`refusing unsafe name ${JSON.stringify(remoteName)}: ${reason}`, ExitCode.PartialMirror);
    this.remoteName = remoteName;
    this.reason = reason;
  }
}

/**
 * Local conditions that stop every further write to the destination — full, over quota,
 * read-only — as `ENOSPC: no space left on device`, or undefined. Going on or retrying cannot help,
 * so engines stop at the first one instead of failing every remaining file the same way.
 */
export function destinationFault(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; typeof e === "object" && e !== null && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === "ENOSPC" || code === "EDQUOT" || code === "EROFS") return `${code}: ${DESTINATION_FAULTS[code]}`;
    // node:sqlite reports a full disk as SQLITE_FULL in its message.
    if (/\b(SQLITE_FULL|database or disk is full)\b/.test(String((e as { message?: unknown }).message)))
      return "ENOSPC: no space left on device (the manifest database)";
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
const DESTINATION_FAULTS = {
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EROFS: "read-only file system",
} as const;

/** The destination cannot take any more files (see `destinationFault`); what landed before is intact. */
export class DestinationError extends HcexportError {
  constructor(dest: string, fault: string, landed: number) {
    super(
      `cannot write to ${dest}: ${fault}; stopped after ${landed} file(s) landed, which are complete and intact (no partial or temp files are left)`,
      ExitCode.Failure,
      {
        hint: fault.startsWith("EROFS")
          ? "make the destination writable, then run the same command again"
          : "free space (or raise the quota), then run the same command again: only what is missing is fetched",
      },
    );
  }
}

/**
 * `err` as the DestinationError of `dest` when it is a destination fault (see
 * `destinationFault`), with `landed` files before it; otherwise `err` itself, to rethrow.
 */
export function asDestinationError(err: unknown, dest: string, landed: number): unknown {
  const fault = destinationFault(err);
  return fault === undefined ? err : new DestinationError(dest, fault, landed);
}

/** DNS answers that mean "this host does not exist here" (NXDOMAIN, no such name). */
const UNKNOWN_HOST_CODES = new Set(["ENOTFOUND", "EAI_NONAME", "EAI_FAIL"]);

/** The host name and code when `err` (or a cause) is a failed name lookup, else undefined. */
export function unknownHost(err: unknown): { code: string; host: string | undefined } | undefined {
  for (let e: unknown = err, depth = 0; typeof e === "object" && e !== null && depth < 6; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && UNKNOWN_HOST_CODES.has(code)) {
      const host = (e as { hostname?: unknown }).hostname;
      return { code, host: typeof host === "string" ? host : undefined };
    }
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** An endpoint's host name does not resolve: exit 1, never retried, stops a mirror at once. */
export class UnreachableError extends HcexportError {
  constructor(host: string, code: string, cause?: unknown) {
    super(`cannot reach ${host}: ${code} (the host name does not resolve)`, ExitCode.Failure, {
      hint: "check the endpoint (--emulator, --storage-endpoint, --healthcare-endpoint) and the network (DNS, proxy), then run the same command again",
      ...(cause === undefined ? {} : { cause }),
    });
  }
}

/**
 * Errors that no other object of the same run can escape — missing or refused credentials
 * (exit 3), a bucket that does not exist or a bad endpoint (exit 2), a host that does not
 * resolve — so a mirror stops at the first and reports it, instead of failing every object the
 * same way and calling the result "partial". Undefined for per-object failures. For one object's
 * download (`scope: "object"`) a 403 is that object's own (an ACL, a CMEK key) and only counted;
 * a 403 on the listing, and a 401 anywhere, is fatal.
 */
export function fatalFault(err: unknown, scope: "listing" | "object" = "listing"): HcexportError | undefined {
  if (err instanceof UnreachableError) return err;
  if (scope === "object" && err instanceof HttpError && err.status === 403) return undefined;
  if (err instanceof HcexportError && (err.exitCode === ExitCode.Permission || err.exitCode === ExitCode.Usage))
    return err;
  const dns = unknownHost(err);
  if (dns !== undefined) return new UnreachableError(dns.host ?? "the endpoint", dns.code, err);
  return undefined;
}

/** The exit code for any thrown value. */
export function exitCodeOf(err: unknown): ExitCode {
  return err instanceof HcexportError ? err.exitCode : ExitCode.Failure;
}
