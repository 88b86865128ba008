import type DcmjsModule from "dcmjs";
import type { CellValue, FieldType, Row, TableField } from "./table-schema.ts";

/**
 * DICOM metadata → one BigQuery row, after the Healthcare API's documented schema: columns named
 * by keyword, only elements present in the instance, VR → type (strings; DA DATE; TM TIME;
 * DT TIMESTAMP; FL/FD FLOAT; AT/SL/SS/UL/US INTEGER; PN and SQ RECORD), mode REPEATED when the
 * dictionary's VM is not 1. Bulk data (OB/OW/…, Pixel Data), file meta and private tags are left
 * out. Pure apart from loading dcmjs (the parser and the DICOM dictionary) on first use.
 */

/** One element of a dataset as dcmjs reads it (the DICOM JSON model plus the raw strings). */
export interface DicomElement {
  vr: string;
  Value?: unknown[];
  _rawValue?: unknown;
}
export type DicomDict = Record<string, DicomElement>;
export type Dictionary = Record<string, { vm: string; name: string } | undefined>;

const STRING_VRS = new Set(["AE", "AS", "CS", "LO", "LT", "SH", "ST", "UC", "UI", "UR", "UT", "DS", "IS"]);
const INTEGER_VRS = new Set(["AT", "SL", "SS", "UL", "US", "SV", "UV"]);
/** PN components, named as in the DICOM JSON model (the exact column names are not documented). */
const PN_FIELDS: TableField[] = ["Alphabetic", "Ideographic", "Phonetic"].map((name) => ({
  name,
  type: "STRING",
  mode: "NULLABLE",
}));

function typeOf(vr: string): FieldType | undefined {
  if (STRING_VRS.has(vr)) return "STRING";
  if (INTEGER_VRS.has(vr)) return "INTEGER";
  if (vr === "FL" || vr === "FD") return "FLOAT";
  if (vr === "DA") return "DATE";
  if (vr === "TM") return "TIME";
  if (vr === "DT") return "TIMESTAMP";
  if (vr === "PN" || vr === "SQ") return "RECORD";
  return undefined; // OB OW OF OD OL OV UN: bulk data, not exported
}

/** The schema fields and the row of one dataset. */
export function datasetRow(dict: DicomDict, dictionary: Dictionary): { fields: TableField[]; row: Row } {
  const fields: TableField[] = [];
  const row: Row = {};
  for (const tag of Object.keys(dict).sort()) {
    const el = dict[tag]!;
    const group = parseInt(tag.slice(0, 4), 16);
    if (group === 0x0002 || group % 2 === 1 || tag === "7FE00010") continue;
    const entry = dictionary[`(${tag.slice(0, 4)},${tag.slice(4)})`];
    const type = typeOf(el.vr);
    if (entry === undefined || type === undefined || !/^[A-Za-z][A-Za-z0-9]*$/.test(entry.name)) continue;
    const repeated = el.vr === "SQ" || entry.vm !== "1";
    const field: TableField = { name: entry.name, type, mode: repeated ? "REPEATED" : "NULLABLE" };
    let values: CellValue[];
    if (el.vr === "SQ") {
      const items = ((el.Value ?? []) as DicomDict[]).map((item) => datasetRow(item, dictionary));
      field.fields = items.reduce<TableField[]>((acc, it) => mergeInto(acc, it.fields), []);
      values = items.map((it) => it.row);
      if (field.fields.length === 0) continue;
    } else if (el.vr === "PN") {
      field.fields = PN_FIELDS;
      values = (el.Value ?? []).map(personName).filter((v) => v !== null);
    } else {
      values = rawValues(el)
        .map((v) => cell(el.vr, v))
        .filter((v) => v !== null);
    }
    fields.push(field);
    row[field.name] = repeated ? values : (values[0] ?? null);
  }
  return { fields, row };
}

function mergeInto(acc: TableField[], more: TableField[]): TableField[] {
  for (const f of more) {
    const mine = acc.find((a) => a.name === f.name);
    if (mine === undefined) acc.push(f);
    else if (mine.fields !== undefined && f.fields !== undefined) mine.fields = mergeInto(mine.fields, f.fields);
  }
  return acc;
}

/** The element's values as stored: dcmjs's raw strings for text VRs (it rewrites some), else its values. */
function rawValues(el: DicomElement): unknown[] {
  if (STRING_VRS.has(el.vr) || el.vr === "DA" || el.vr === "TM" || el.vr === "DT") {
    const raw = el._rawValue ?? el.Value ?? [];
    const list = Array.isArray(raw) ? raw : [raw];
    // A string element whose raw value holds backslashes carries several values.
    return list.flatMap((v) =>
      typeof v === "string" && el.vr !== "LT" && el.vr !== "ST" && el.vr !== "UT" ? v.split("\\") : [v],
    );
  }
  return el.Value ?? [];
}

function cell(vr: string, v: unknown): CellValue {
  if (v === null || v === undefined) return null;
  if (vr === "FL" || vr === "FD") return typeof v === "number" && Number.isFinite(v) ? v : null;
  if (INTEGER_VRS.has(vr)) return typeof v === "number" ? v : /^-?\d+$/.test(String(v)) ? Number(v) : null;
  const s = String(v)
    .replace(/[\0 ]+$/, "")
    .replace(/^ +/, "");
  if (s === "") return null;
  if (vr === "DA") return dicomDate(s);
  if (vr === "TM") return dicomTime(s);
  if (vr === "DT") return dicomDateTime(s);
  return s;
}

function personName(v: unknown): CellValue {
  if (typeof v !== "object" || v === null) return typeof v === "string" && v !== "" ? { Alphabetic: v } : null;
  const pn = v as Record<string, unknown>;
  const out: Row = {};
  for (const k of ["Alphabetic", "Ideographic", "Phonetic"]) {
    const s = typeof pn[k] === "string" ? (pn[k] as string).trim() : "";
    out[k] = s === "" ? null : s;
  }
  return Object.values(out).every((x) => x === null) ? null : out;
}

/** `YYYYMMDD` → `YYYY-MM-DD` (BigQuery DATE); anything else null. */
export function dicomDate(s: string): string | null {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(s) ?? /^(\d{4})\.(\d{2})\.(\d{2})$/.exec(s);
  return m === null ? null : `${m[1]}-${m[2]}-${m[3]}`;
}

/** `HH[MM[SS[.F{1,6}]]]` → `HH:MM:SS[.F]` (BigQuery TIME); anything else null. */
export function dicomTime(s: string): string | null {
  const m = /^(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?(\.\d{1,6})?$/.exec(s);
  if (m === null || Number(m[1]) > 23) return null;
  return `${m[1]}:${m[2] ?? "00"}:${m[3] ?? "00"}${m[4] ?? ""}`;
}

/** DICOM DT (`YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]`) → microseconds since the epoch, UTC unless an offset is given. */
export function dicomDateTime(s: string): number | null {
  const m = /^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?$/.exec(s);
  if (m === null) return null;
  const ms = Date.UTC(
    Number(m[1]),
    Number(m[2] ?? "01") - 1,
    Number(m[3] ?? "01"),
    Number(m[4] ?? "0"),
    Number(m[5] ?? "0"),
    Number(m[6] ?? "0"),
  );
  const frac = m[7] === undefined ? 0 : Math.round(Number(m[7]) * 1e6);
  const off =
    m[8] === undefined
      ? 0
      : (Number(m[8].slice(0, 3)) * 60 + Math.sign(Number(m[8].slice(0, 3)) || 1) * Number(m[8].slice(3))) * 60_000;
  return Number.isFinite(ms) ? (ms - off) * 1000 + frac : null;
}

type Dcmjs = typeof DcmjsModule;
let dcmjs: Promise<Dcmjs> | undefined;

/** Parses a Part 10 file (up to Pixel Data) and returns its row. Loads dcmjs on first use. */
export async function instanceRow(part10: Buffer): Promise<{ fields: TableField[]; row: Row }> {
  const lib = await (dcmjs ??= import("dcmjs").then((m) => m.default));
  const ab = part10.buffer.slice(part10.byteOffset, part10.byteOffset + part10.byteLength) as ArrayBuffer;
  const { dict } = lib.data.DicomMessage.readFile(ab, { untilTag: "7FE00010", includeUntilTagValue: false });
  return datasetRow(dict as DicomDict, lib.data.DicomMetaDictionary.dictionary);
}
