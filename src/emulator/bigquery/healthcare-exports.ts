import type { DicomStoreRecord, OperationRecord } from "../healthcare/model.ts";
import type { HealthcareServiceOptions } from "../healthcare/service.ts";
import type { ProjectRegistry } from "../projects.ts";
import type { FaultConfig } from "../types.ts";
import { parseBigQueryDestination, runBigQueryExport, type BigQueryDestination } from "./dicom-export.ts";
import type { BigQueryModel } from "./model.ts";
import type { ProjectPolicies } from "./project-iam.ts";

/** The Healthcare service's hook for `dicomStores.export` with a `bigqueryDestination`. */
export interface BigQueryExports {
  /** Validates the destination (throws the API's 400) and starts the export; returns its operation. */
  start(
    hc: HealthcareServiceOptions,
    version: "v1" | "v1beta1",
    store: DicomStoreRecord,
    destination: unknown,
    random: () => number,
    faults: () => FaultConfig,
    now: () => Date,
  ): OperationRecord;
  /** Restarts an unfinished export after an emulator restart (it starts over, like a Cloud Storage one). */
  resume(
    hc: HealthcareServiceOptions,
    op: OperationRecord,
    store: DicomStoreRecord,
    random: () => number,
    faults: () => FaultConfig,
    now: () => Date,
  ): void;
}

export function bigQueryExports(
  bigquery: BigQueryModel,
  policies: ProjectPolicies,
  projects: ProjectRegistry,
): BigQueryExports {
  const destinations = new Map<string, BigQueryDestination>();
  const run = (
    hc: HealthcareServiceOptions,
    op: OperationRecord,
    store: DicomStoreRecord,
    dest: BigQueryDestination,
    random: () => number,
    faults: () => FaultConfig,
    now: () => Date,
  ) => {
    const project = store.name.split("/")[1]!;
    hc.model.track(
      runBigQueryExport({
        op,
        store,
        destination: dest,
        member: `serviceAccount:service-${projects.ensure(project).projectNumber}@gcp-sa-healthcare.iam.gserviceaccount.com`,
        bigquery,
        policies,
        rate: hc.exportInstancesPerSecond,
        failureRate: () => faults().exportFailureRate,
        random,
        now,
        onChange: (final) => hc.model.changed(final),
        signal: hc.model.shutdown.signal,
      }),
    );
  };
  return {
    start(hc, version, store, destination, random, faults, now) {
      const dest = parseBigQueryDestination(destination, version);
      const dataset = /^(projects\/[^/]+\/locations\/[^/]+\/datasets\/[^/]+)/.exec(store.name)![1]!;
      const op = hc.model.newOperation(
        {
          dataset,
          apiVersion: version,
          method: "dicom.DicomService.ExportDicomData",
          counter: { success: 0, failure: 0, pending: store.instances.length },
          source: store.name,
          destination: `bq://${dest.projectId}.${dest.datasetId}.${dest.tableId}`,
        },
        now(),
      );
      destinations.set(op.name, dest);
      run(hc, op, store, dest, random, faults, now);
      return op;
    },
    resume(hc, op, store, random, faults, now) {
      // The disposition is not journaled with the operation; a resumed export appends nothing twice
      // because BigQuery state is in memory and starts empty after a restart.
      const dest = destinations.get(op.name) ?? {
        ...parseBigQueryDestination({ tableUri: op.destination, writeDisposition: "WRITE_TRUNCATE" }, "v1"),
      };
      run(hc, op, store, dest, random, faults, now);
    },
  };
}
