import dicomParser from "dicom-parser";
import type { DicomJson } from "./qido.ts";

/**
 * An instance a user put into a store (STOW-RS, `dicomStores.import`, `emulator --load`): the
 * exact bytes received, and the attributes QIDO-RS serves, read from them by dicom-parser.
 * Beside the generated SIIM instances (`GeneratedInstance`), whose bytes are made on demand.
 */
export interface StoredInstance {
  readonly kind: "stored";
  readonly studyUid: string;
  readonly seriesUid: string;
  readonly sopInstanceUid: string;
  readonly sopClassUid: string;
  /** Transfer Syntax UID of the file meta group, served in `Content-Type: application/dicom; transfer-syntax=…`. */
  readonly transferSyntax: string;
  /** The searchable attributes in the DICOM JSON model (no bulk data). */
  readonly attributes: DicomJson;
  /** The bytes as received. */
  data(): Buffer;
}

/** Why a file is not accepted, in the words of a DICOM failure reason (PS3.18 table 10.5.3-1). */
export interface ParseFailure {
  readonly ok: false;
  readonly reason: string;
  /** The SOP Instance / Class UIDs when they could be read (for the FailedSOPSequence). */
  readonly sopInstanceUid?: string;
  readonly sopClassUid?: string;
}

/**
 * Attributes copied into the QIDO model, with their VRs (implicit-VR files carry none). The
 * emulator's QIDO matches on these and returns them with `includefield`.
 */
const SEARCHABLE: ReadonlyArray<readonly [tag: string, vr: string]> = [
  ["00080005", "CS"],
  ["00080016", "UI"],
  ["00080018", "UI"],
  ["00080020", "DA"],
  ["00080021", "DA"],
  ["00080030", "TM"],
  ["00080050", "SH"],
  ["00080060", "CS"],
  ["00080064", "CS"],
  ["00080090", "PN"],
  ["00081030", "LO"],
  ["0008103E", "LO"],
  ["00100010", "PN"],
  ["00100020", "LO"],
  ["00100030", "DA"],
  ["00100040", "CS"],
  ["00101010", "AS"],
  ["00180015", "CS"],
  ["00185101", "CS"],
  ["0020000D", "UI"],
  ["0020000E", "UI"],
  ["00200010", "SH"],
  ["00200011", "IS"],
  ["00200013", "IS"],
  ["00280002", "US"],
  ["00280004", "CS"],
  ["00280008", "IS"],
  ["00280010", "US"],
  ["00280011", "US"],
  ["00280100", "US"],
  ["00280101", "US"],
];

/** The UID grammar (PS3.5 §9.1): digits and dots, at most 64 characters. */
const UID = /^[0-9]+(\.[0-9]+)*$/;

/**
 * Reads a DICOM Part 10 file. A file without the `DICM` preamble, without the four UIDs a store
 * needs, or with UIDs that are not UIDs is a failure (the real API refuses such instances too).
 */
export function parseStoredInstance(bytes: Buffer): StoredInstance | ParseFailure {
  let ds: dicomParser.DataSet;
  try {
    ds = dicomParser.parseDicom(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), {
      untilTag: "x7fe00010",
    });
  } catch (err) {
    const text = typeof err === "string" ? err : err instanceof Error ? err.message : String(err);
    return { ok: false, reason: `not a DICOM Part 10 file: ${text.replace(/^dicomParser\.\w+: /, "")}` };
  }
  const str = (tag: string) => ds.string(`x${tag.toLowerCase()}`)?.replace(/\0+$/, "").trim();
  const sopInstanceUid = str("00080018");
  const sopClassUid = str("00080016");
  const ids = { ...(sopInstanceUid ? { sopInstanceUid } : {}), ...(sopClassUid ? { sopClassUid } : {}) };
  const studyUid = str("0020000D");
  const seriesUid = str("0020000E");
  for (const [name, uid] of [
    ["SOPInstanceUID", sopInstanceUid],
    ["SOPClassUID", sopClassUid],
    ["StudyInstanceUID", studyUid],
    ["SeriesInstanceUID", seriesUid],
  ] as const) {
    if (uid === undefined || uid === "") return { ok: false, reason: `missing ${name}`, ...ids };
    if (uid.length > 64 || !UID.test(uid)) return { ok: false, reason: `invalid ${name} "${uid}"`, ...ids };
  }
  const attributes: DicomJson = {};
  for (const [tag, vr] of SEARCHABLE) {
    const key = `x${tag.toLowerCase()}`;
    const el = ds.elements[key];
    if (el === undefined) continue;
    const actualVr = el.vr ?? vr;
    if (el.length === 0) {
      attributes[tag] = { vr: actualVr };
      continue;
    }
    if (actualVr === "US") {
      attributes[tag] = { vr: actualVr, Value: [ds.uint16(key)] };
      continue;
    }
    const values = (str(tag) ?? "").split("\\").map((v) => v.trim());
    if (actualVr === "PN") attributes[tag] = { vr: actualVr, Value: values.map((v) => ({ Alphabetic: v })) };
    else if (actualVr === "IS" || actualVr === "DS")
      attributes[tag] = { vr: actualVr, Value: values.map((v) => (v === "" ? null : Number(v))) };
    else attributes[tag] = { vr: actualVr, Value: values };
  }
  const transferSyntax = ds.string("x00020010")?.replace(/\0+$/, "").trim() || "1.2.840.10008.1.2";
  const data = Buffer.from(bytes);
  return {
    kind: "stored",
    studyUid: studyUid!,
    seriesUid: seriesUid!,
    sopInstanceUid: sopInstanceUid!,
    sopClassUid: sopClassUid!,
    transferSyntax,
    attributes,
    data: () => data,
  };
}

/** Narrows a parse result. */
export function isParseFailure(x: StoredInstance | ParseFailure): x is ParseFailure {
  return "ok" in x;
}
