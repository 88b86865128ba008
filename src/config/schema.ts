import { z } from "zod";
import { checkBucketName, parseStoreName, parseTableUri } from "../core/resource-names.ts";
import { checkRelativeName } from "../core/safe-path.ts";
import { checkFilterPath, parseExportMimeType } from "../gcp/export-options.ts";

const storeOf = (kind: "dicomStores" | "fhirStores") =>
  z.string().superRefine((v, ctx) => {
    const r = parseStoreName(v, kind);
    if (!r.ok) ctx.addIssue({ code: "custom", message: r.error });
  });

const prefix = z.string().superRefine((v, ctx) => {
  const r = checkRelativeName(v);
  if (!r.ok) ctx.addIssue({ code: "custom", message: `"${v}" is not a usable object prefix: ${r.reason}` });
});

/** A local path: non-empty, no NUL, within PATH_MAX/NAME_MAX (else the OS fails later with a raw ENAMETOOLONG). */
const localPath = z
  .string()
  .min(1)
  .superRefine((v, ctx) => {
    if (v.includes("\0")) ctx.addIssue({ code: "custom", message: "a path may not contain NUL" });
    else if (Buffer.byteLength(v) > 4000)
      ctx.addIssue({ code: "custom", message: `a path of ${Buffer.byteLength(v)} bytes is too long (at most 4000)` });
    else if (v.split(/[\\/]/).some((seg) => Buffer.byteLength(seg) > 255))
      ctx.addIssue({ code: "custom", message: "a path segment is longer than 255 bytes" });
  });

/** `bq://PROJECT.DATASET.TABLE` (the BigQuery metadata export of one store). */
const tableUri = z.string().superRefine((v, ctx) => {
  const r = parseTableUri(v);
  if (!r.ok) ctx.addIssue({ code: "custom", message: r.error });
});

const bigqueryExport = z
  .object({
    table: tableUri,
    writeDisposition: z.enum(["WRITE_EMPTY", "WRITE_TRUNCATE", "WRITE_APPEND"]).default("WRITE_TRUNCATE"),
    /** Location of the dataset when hcexport creates it. */
    location: z.string().min(1).optional(),
  })
  .strict();

/**
 * `fhirExports[i]` (issue #12 part 6): a FHIR store exported to `gs://BUCKET/PREFIX` (one NDJSON
 * object per resource type) and mirrored to `dest`, as a lane of its own. `store` defaults to the
 * annotations' FHIR store.
 */
const fhirExport = z.object({ store: storeOf("fhirStores").optional(), prefix, dest: localPath }).strict();

/** Problems of `fhirExports` against the rest of the config (a separate check, kept apart from `exports`'). */
function checkFhirExports(
  c: { exports: ReadonlyArray<{ prefix: string }>; fhirExports?: ReadonlyArray<{ store?: string; prefix: string }> },
  annotationsStore: string | undefined,
  ctx: z.RefinementCtx,
): void {
  const used = new Map<string, string>(c.exports.map((e, i) => [e.prefix, `exports[${i}]`]));
  c.exports.forEach((e, i) => used.set(`${e.prefix}.bq`, `the BigQuery lane of exports[${i}]`));
  (c.fhirExports ?? []).forEach((f, i) => {
    const first = used.get(f.prefix);
    if (first !== undefined)
      ctx.addIssue({
        code: "custom",
        path: ["fhirExports", i, "prefix"],
        message: `prefix "${f.prefix}" is already used by ${first}`,
      });
    used.set(f.prefix, `fhirExports[${i}]`);
    if (f.store === undefined && annotationsStore === undefined)
      ctx.addIssue({
        code: "custom",
        path: ["fhirExports", i, "store"],
        message:
          "name the FHIR store (projects/P/locations/L/datasets/D/fhirStores/F): " +
          "there is no annotations store to default to",
      });
  });
}

/** `gcsDestination.mimeType` of the export, in the API's spelling (e.g. `image/png`). */
const exportMimeType = z.string().transform((v, ctx) => {
  const r = parseExportMimeType(v);
  if (r.ok) return r.value.value;
  ctx.addIssue({ code: "custom", message: r.error });
  return z.NEVER;
});

/** `/studies/UID` or `/studies/UID/series/UID`: what a filtered export exports. */
const filterPath = z.string().superRefine((v, ctx) => {
  const bad = checkFilterPath(v);
  if (bad !== undefined) ctx.addIssue({ code: "custom", message: bad });
});

const url = z.string().superRefine((v, ctx) => {
  if (!/^https?:\/\/[^\s/]+/.test(v)) ctx.addIssue({ code: "custom", message: `"${v}" is not an http(s) URL` });
});

/** The config file (DESIGN §3), validated by this one schema. Unknown keys are errors. */
export const configSchema = z
  .object({
    /** Free text for people reading the file (JSON has no comments); ignored. */
    $comment: z.string().optional(),
    project: z
      .string()
      .regex(
        /^[a-z][a-z0-9-]{4,28}[a-z0-9]$/,
        "must be a Google Cloud project id (6–30 lowercase letters, digits, hyphens)",
      ),
    bucket: z
      .object({
        name: z.string().superRefine((v, ctx) => {
          const bad = checkBucketName(v);
          if (bad !== undefined) ctx.addIssue({ code: "custom", message: bad });
        }),
        location: z.string().min(1).default("US"),
        storageClass: z
          .enum(["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE", "REGIONAL", "MULTI_REGIONAL"])
          .default("STANDARD"),
        uniformAccess: z.boolean().default(true),
      })
      .strict(),
    serviceAgent: z
      .string()
      .regex(
        /^service-\d+@gcp-sa-healthcare\.iam\.gserviceaccount\.com$/,
        "must look like service-PROJECT_NUMBER@gcp-sa-healthcare.iam.gserviceaccount.com",
      )
      .optional(),
    grantIam: z.boolean().default(false),
    exports: z
      .array(
        z
          .object({
            store: storeOf("dicomStores"),
            prefix,
            dest: localPath,
            bigquery: bigqueryExport.optional(),
            mimeType: exportMimeType.optional(),
            /** Only these studies/series (v1beta1 filterConfig); or `filterFile`, one path a line. */
            filter: z.array(filterPath).min(1, "list at least one study or series").optional(),
            filterFile: localPath.optional(),
          })
          .strict()
          .superRefine((e, ctx) => {
            if (e.filter !== undefined && e.filterFile !== undefined)
              ctx.addIssue({ code: "custom", path: ["filterFile"], message: "give filter or filterFile, not both" });
          }),
      )
      .min(1, "name at least one DICOM store to export"),
    annotations: z
      .object({
        store: storeOf("fhirStores"),
        documentReference: z.string().regex(/^[A-Za-z0-9\-.]{1,64}$/, "must be a FHIR resource id"),
        dest: localPath,
      })
      .strict()
      .optional(),
    /** FHIR stores exported and mirrored as lanes of their own (see `fhirExport`). */
    fhirExports: z.array(fhirExport).optional(),
    mirror: z
      .object({ concurrency: z.number().int().min(1).max(512).default(32), delete: z.boolean().default(false) })
      .strict()
      .default({ concurrency: 32, delete: false }),
    endpoints: z
      .object({
        emulator: url.optional(),
        storage: url.optional(),
        healthcare: url.optional(),
        resourceManager: url.optional(),
      })
      .strict()
      .optional(),
    /** Where state, lock and reports live; relative to the config file's directory. */
    stateDir: localPath.default(".hcexport"),
  })
  .strict()
  .superRefine((c, ctx) => {
    const seen = new Map<string, number>();
    c.exports.forEach((e, i) => {
      const first = seen.get(e.prefix);
      if (first !== undefined)
        ctx.addIssue({
          code: "custom",
          path: ["exports", i, "prefix"],
          message: `prefix "${e.prefix}" is already used by exports[${first}]`,
        });
      seen.set(e.prefix, i);
    });
    const tables = new Map<string, number>();
    c.exports.forEach((e, i) => {
      const bq = e.bigquery;
      if (bq === undefined) return;
      const first = tables.get(bq.table);
      const other = first === undefined ? undefined : c.exports[first]!.bigquery!;
      if (first !== undefined && (bq.writeDisposition !== "WRITE_APPEND" || other?.writeDisposition !== "WRITE_APPEND"))
        ctx.addIssue({
          code: "custom",
          path: ["exports", i, "bigquery", "table"],
          message: `table ${bq.table} is also the destination of exports[${first}]; the exports run in parallel, so unless both use WRITE_APPEND one would replace or refuse the other's rows`,
        });
      if (first === undefined) tables.set(bq.table, i);
    });
    checkFhirExports(c, c.annotations?.store, ctx);
  });

export type Config = z.infer<typeof configSchema>;

/** One problem, with the JSON path it is at (`exports[1].store`). */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

/** Pure validation: every problem is reported, none is thrown. */
export function validateConfig(input: unknown): { config?: Config; problems: ConfigProblem[] } {
  const r = configSchema.safeParse(input);
  if (r.success) return { config: r.data, problems: [] };
  const problems = r.error.issues.map((issue) => {
    const keys = issue.code === "unrecognized_keys" ? ((issue as { keys?: string[] }).keys ?? []) : [];
    const base = formatPath(issue.path);
    if (keys.length > 0)
      return {
        path: base,
        message: `unknown key${keys.length > 1 ? "s" : ""} ${keys.map((k) => `"${k}"`).join(", ")}`,
      };
    return { path: base, message: issue.message };
  });
  return { problems };
}

/** `["exports", 1, "store"]` → `exports[1].store`; the root is `(config)`. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const k of path) out += typeof k === "number" ? `[${k}]` : `${out === "" ? "" : "."}${String(k)}`;
  return out === "" ? "(config)" : out;
}
