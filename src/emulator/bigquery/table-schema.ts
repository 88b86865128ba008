/**
 * BigQuery table schemas and values as the v2 REST API speaks them (pure): field lists, schema
 * merging, the `{"f":[{"v":…}]}` row encoding of `tabledata.list`/`jobs.query`, and the
 * stored-size estimate behind `numBytes`.
 */

export type FieldType = "STRING" | "INTEGER" | "FLOAT" | "BOOLEAN" | "DATE" | "TIME" | "TIMESTAMP" | "RECORD";
export type FieldMode = "NULLABLE" | "REQUIRED" | "REPEATED";

export interface TableField {
  name: string;
  type: FieldType;
  mode: FieldMode;
  fields?: TableField[];
}

/**
 * A stored cell: strings for STRING/DATE/TIME, numbers for INTEGER/FLOAT, booleans, TIMESTAMP as
 * integer microseconds since the epoch, objects for RECORD, arrays for REPEATED, null.
 */
export type CellValue = string | number | boolean | null | CellValue[] | { [name: string]: CellValue };
export type Row = Record<string, CellValue>;

/** Legacy type names the API accepts on input, mapped to the names it returns. */
const TYPE_ALIASES: Record<string, FieldType> = {
  STRING: "STRING",
  INTEGER: "INTEGER",
  INT64: "INTEGER",
  FLOAT: "FLOAT",
  FLOAT64: "FLOAT",
  BOOLEAN: "BOOLEAN",
  BOOL: "BOOLEAN",
  DATE: "DATE",
  TIME: "TIME",
  TIMESTAMP: "TIMESTAMP",
  RECORD: "RECORD",
  STRUCT: "RECORD",
};

/** Validates a schema given by a client (tables.insert); returns the problem or the normalised fields. */
export function parseSchema(input: unknown, at = "schema.fields"): TableField[] | string {
  if (!Array.isArray(input)) return `${at} must be a list`;
  const out: TableField[] = [];
  const seen = new Set<string>();
  for (const [i, f] of input.entries()) {
    const { name, type, mode, fields } = (f ?? {}) as Record<string, unknown>;
    if (typeof name !== "string" || !/^[A-Za-z_][A-Za-z0-9_]{0,299}$/.test(name))
      return `Invalid field name "${String(name)}" at ${at}[${i}]. Fields must contain only letters, numbers, and underscores, start with a letter or underscore, and be at most 300 characters long.`;
    if (seen.has(name.toLowerCase())) return `Field ${name} already exists in schema`;
    seen.add(name.toLowerCase());
    const t = TYPE_ALIASES[String(type ?? "").toUpperCase()];
    if (t === undefined) return `Invalid value for type: ${String(type)} is not a valid value`;
    const m = String(mode ?? "NULLABLE").toUpperCase();
    if (m !== "NULLABLE" && m !== "REQUIRED" && m !== "REPEATED")
      return `Invalid value for mode: ${m} is not a valid value`;
    const field: TableField = { name, type: t, mode: m };
    if (t === "RECORD") {
      const nested = parseSchema(fields, `${at}[${i}].fields`);
      if (typeof nested === "string") return nested;
      if (nested.length === 0) return `Field ${name} is type RECORD but has no schema`;
      field.fields = nested;
    }
    out.push(field);
  }
  return out;
}

/**
 * `base` with the fields of `extra` added that it lacks (recursively inside RECORDs), the way a
 * load job with schema update options widens a table. A field keeps its first type.
 */
export function mergeFields(base: readonly TableField[], extra: readonly TableField[]): TableField[] {
  const out = base.map((f) => ({ ...f, ...(f.fields === undefined ? {} : { fields: [...f.fields] }) }));
  for (const f of extra) {
    const mine = out.find((o) => o.name === f.name);
    if (mine === undefined) out.push(structuredClone(f));
    else if (mine.type === "RECORD" && f.type === "RECORD")
      mine.fields = mergeFields(mine.fields ?? [], f.fields ?? []);
  }
  return out;
}

export interface EncodeOptions {
  /** `formatOptions.useInt64Timestamp`: TIMESTAMP as integer microseconds. */
  readonly int64Timestamp?: boolean;
  /** `formatOptions.timestampOutputFormat=ISO8601_STRING`. */
  readonly isoTimestamp?: boolean;
}

/** One row as `{"f":[{"v":…}, …]}` in schema order: scalars as strings, RECORD `{f}`, REPEATED `[{v}]`. */
export function encodeRow(fields: readonly TableField[], row: Row, options: EncodeOptions = {}): { f: unknown[] } {
  return { f: fields.map((field) => ({ v: encodeCell(field, row[field.name] ?? null, options) })) };
}

function encodeCell(field: TableField, value: CellValue, options: EncodeOptions): unknown {
  if (field.mode === "REPEATED") {
    const items = Array.isArray(value) ? value : value === null ? [] : [value];
    return items.map((item) => ({ v: encodeScalar(field, item, options) }));
  }
  return encodeScalar(field, value, options);
}

function encodeScalar(field: TableField, value: CellValue, options: EncodeOptions): unknown {
  if (value === null) return null;
  if (field.type === "RECORD") {
    const record = (typeof value === "object" && !Array.isArray(value) ? value : {}) as Row;
    return encodeRow(field.fields ?? [], record, options);
  }
  if (field.type === "TIMESTAMP" && typeof value === "number") {
    if (options.int64Timestamp === true) return String(Math.trunc(value));
    if (options.isoTimestamp === true) return new Date(value / 1000).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
    return timestampSeconds(value);
  }
  return String(value);
}

/** TIMESTAMP's default wire form: seconds as a float in E notation, e.g. `1.51787519E9`. */
export function timestampSeconds(micros: number): string {
  const s = micros / 1e6;
  if (s === 0) return "0.0";
  const exp = Math.floor(Math.log10(Math.abs(s)));
  const mantissa = String(s / 10 ** exp);
  return `${mantissa.includes(".") ? mantissa : `${mantissa}.0`}E${exp}`;
}

/**
 * Logical bytes of a row (BigQuery's storage pricing sizes: STRING 2 + UTF-8 bytes, numbers,
 * dates and times 8, BOOL 1, RECORD the sum of its fields, NULL 0).
 */
export function rowBytes(fields: readonly TableField[], row: Row): number {
  let n = 0;
  for (const f of fields) {
    const v = row[f.name] ?? null;
    for (const item of Array.isArray(v) ? v : [v]) n += cellBytes(f, item);
  }
  return n;
}

function cellBytes(field: TableField, v: CellValue): number {
  if (v === null) return 0;
  if (field.type === "RECORD") return rowBytes(field.fields ?? [], v as Row);
  if (field.type === "STRING") return 2 + Buffer.byteLength(String(v));
  if (field.type === "BOOLEAN") return 1;
  return 8;
}

/** Keeps only the top-level fields named in `selectedFields` (`a,b`), in schema order. */
export function selectFields(fields: readonly TableField[], selected: string | null): TableField[] {
  if (selected === null || selected.trim() === "") return [...fields];
  const names = new Set(selected.split(",").map((s) => s.trim().split(".")[0]!));
  return fields.filter((f) => names.has(f.name));
}
