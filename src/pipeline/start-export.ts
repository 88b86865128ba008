import { systemClock, type Clock } from "../core/clock.ts";
import { HcexportError } from "../core/errors.ts";
import type { EventSink } from "../core/events.ts";
import { datasetPath, parseStoreName } from "../core/resource-names.ts";
import { isRetryable } from "../core/retry.ts";
import type { ExportOptions, HealthcareApi, Operation } from "../gcp/healthcare.ts";

/** How far the server's clock may be behind ours when we look for an export we started. */
export const CLOCK_SKEW_MS = 5 * 60_000;

export type StartExportEvent =
  | { readonly kind: "export.adopted"; readonly operation: string; readonly store: string; readonly reason: string }
  | { readonly kind: "export.retry"; readonly store: string; readonly attempt: number; readonly error: string }
  | {
      readonly kind: "export.filter";
      readonly store: string;
      readonly uri: string;
      readonly paths: number;
      /** false: the object was already there with these bytes (a rerun). */
      readonly uploaded: boolean;
    };

export interface StartExportOptions {
  /** When our first attempt was made (ISO time); operations created before it are not ours. */
  readonly since: string;
  /** Operation names already accounted for (other exports of this run); never adopted. */
  readonly known: ReadonlySet<string>;
  /** An earlier attempt may have reached the server (state says `starting`): look before posting. */
  readonly maybeStarted: boolean;
  readonly attempts?: number;
  /** Passed to `startExport` (e.g. a BigQuery write disposition). */
  readonly exportOptions?: ExportOptions;
  readonly onEvent?: EventSink<StartExportEvent>;
  readonly clock?: Clock;
  /** Ends the retry waits at once when aborted (Ctrl-C). */
  readonly signal?: AbortSignal;
}

/**
 * The `metadata.apiMethodName` an export of this kind of store runs as. A DICOM store's export to
 * Cloud Storage and to BigQuery both run as ExportDicomData (the operation names neither its store
 * nor its destination), so those two are told apart by the journal, never by the server: see
 * exportStep in steps.ts.
 */
export const EXPORT_METHOD = { dicomStores: "ExportDicomData", fhirStores: "ExportResources" } as const;

/**
 * Export operations of `dataset` that this run may have started and not recorded: `method`
 * (default ExportDicomData), created at or after `since` (minus clock skew), not in `known`. Pure.
 */
export function candidateExports(
  ops: readonly Operation[],
  since: string,
  known: ReadonlySet<string>,
  method: string = EXPORT_METHOD.dicomStores,
): Operation[] {
  const from = Date.parse(since) - CLOCK_SKEW_MS;
  return ops.filter((op) => {
    if (known.has(op.name)) return false;
    if (!(op.metadata?.apiMethodName ?? "").endsWith(`.${method}`)) return false;
    const created = Date.parse(op.metadata?.createTime ?? "");
    return Number.isFinite(created) && created >= from;
  });
}

/**
 * Starts `dicomStores.export` (or `fhirStores.export`) exactly once as far as we can tell. The POST is not idempotent, so
 * it is never retried blindly: when an earlier attempt may have reached the server (a crash between
 * sending and saving the name, or a transient error after sending), the dataset's operations are
 * listed and an export created since our first attempt is adopted instead of starting another.
 *
 * Operation metadata does not name the store, so adoption is by time and method. If a second
 * party exports in the same dataset at the same moment we could adopt its operation; if we find
 * nothing we start a new export. Both are safe for the data: an export overwrites each object with
 * the identical instance, so a duplicate costs time, never correctness.
 */
export async function startExportOnce(
  api: HealthcareApi,
  store: string,
  uriPrefix: string,
  options: StartExportOptions,
): Promise<string> {
  const parsed = parseStoreName(store);
  if (!parsed.ok) throw new HcexportError(parsed.error, 2);
  if (parsed.value.kind === "fhirStores" && !uriPrefix.startsWith("gs://"))
    throw new HcexportError(`${store}: hcexport exports a FHIR store only to gs://`, 2);
  const dataset = datasetPath(parsed.value);
  const method = EXPORT_METHOD[parsed.value.kind];
  const emit = options.onEvent ?? (() => {});
  const attempts = options.attempts ?? 4;
  const adopt = async (reason: string): Promise<string | undefined> => {
    const found = candidateExports(await api.listOperations(dataset), options.since, options.known, method);
    // Oldest first: if two are ours, the first one is the one a rerun would have resumed.
    const op = found.sort(
      (a, b) => Date.parse(a.metadata?.createTime ?? "") - Date.parse(b.metadata?.createTime ?? ""),
    )[0];
    if (op === undefined) return undefined;
    emit({ kind: "export.adopted", operation: op.name, store, reason });
    return op.name;
  };
  if (options.maybeStarted) {
    const name = await adopt("an earlier run was interrupted while starting this export");
    if (name !== undefined) return name;
  }
  for (let attempt = 1; ; attempt++) {
    try {
      return await api.startExport(store, uriPrefix, options.exportOptions);
    } catch (err) {
      if (!isRetryable(err) || attempt >= attempts) throw err;
      emit({ kind: "export.retry", store, attempt, error: err instanceof Error ? err.message : String(err) });
      await (options.clock ?? systemClock).sleep(1000 * attempt, options.signal);
      const name = await adopt("the request failed after it may have reached the server");
      if (name !== undefined) return name;
    }
  }
}
