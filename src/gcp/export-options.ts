import { createHash } from "node:crypto";

/**
 * The options of a DICOM export to Cloud Storage: `gcsDestination.mimeType` (what each instance
 * becomes) and the study/series filter (`filterConfig.resourcePathsGcsUri`, v1beta1 only). Pure.
 */

/** Transfer syntaxes `application/dicom` takes (GoogleCloudHealthcareV1DicomGcsDestination.mimeType). */
export const DICOM_TRANSFER_SYNTAXES = [
  "*",
  "1.2.840.10008.1.2",
  "1.2.840.10008.1.2.1",
  "1.2.840.10008.1.2.1.99",
  "1.2.840.10008.1.2.4.50",
  "1.2.840.10008.1.2.4.51",
  "1.2.840.10008.1.2.4.57",
  "1.2.840.10008.1.2.4.70",
  "1.2.840.10008.1.2.4.80",
  "1.2.840.10008.1.2.4.81",
  "1.2.840.10008.1.2.4.90",
  "1.2.840.10008.1.2.4.91",
  "1.2.840.10008.1.2.4.110",
  "1.2.840.10008.1.2.4.111",
  "1.2.840.10008.1.2.4.112",
  "1.2.840.10008.1.2.4.201",
  "1.2.840.10008.1.2.4.202",
  "1.2.840.10008.1.2.4.203",
  "1.2.840.10008.1.2.5",
  "1.2.840.10008.1.2.8.1",
] as const;

/** The accepted forms, for messages. */
export const MIME_TYPE_FORMS = [
  "application/dicom; transfer-syntax=* | 1.2.840.10008.1.2.1 | 1.2.840.10008.1.2.4.50 | … (the API's list)",
  "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50",
  "image/png",
  "application/octet-stream[; transfer-syntax=* | 1.2.840.10008.1.2.1]",
] as const;

export type ExportMimeKind = "dicom" | "jpeg" | "png" | "octet-stream";

export interface ExportMimeType {
  readonly kind: ExportMimeKind;
  /** The value sent as `gcsDestination.mimeType`, spaced the API's way. */
  readonly value: string;
  /** The extension of each exported object: `.dcm`, `.jpg`, `.png`, or none. */
  readonly extension: string;
}

const EXTENSION: Record<ExportMimeKind, string> = { dicom: ".dcm", jpeg: ".jpg", png: ".png", "octet-stream": "" };

/** Parses a mimeType the API accepts for a DICOM export to Cloud Storage; an error names the accepted forms. */
export function parseExportMimeType(text: string): { ok: true; value: ExportMimeType } | { ok: false; error: string } {
  const bad = (why: string) => ({
    ok: false as const,
    error: `${why}; mimeType must be one of:\n  ${MIME_TYPE_FORMS.join("\n  ")}`,
  });
  const [type = "", ...params] = text.split(";").map((s) => s.trim());
  const ts = params.map((p) => /^transfer-syntax=(.*)$/i.exec(p)?.[1]?.trim());
  if (params.length > 1 || ts.some((t) => t === undefined || t === ""))
    return bad(`"${text}" has a parameter other than one transfer-syntax`);
  const syntax = ts[0];
  const ok = (kind: ExportMimeKind, value: string) => ({
    ok: true as const,
    value: { kind, value, extension: EXTENSION[kind] },
  });
  switch (type.toLowerCase()) {
    case "application/dicom":
      if (syntax !== undefined && !(DICOM_TRANSFER_SYNTAXES as readonly string[]).includes(syntax))
        return bad(`"${syntax}" is not a transfer syntax the export writes`);
      return ok("dicom", syntax === undefined ? "application/dicom" : `application/dicom; transfer-syntax=${syntax}`);
    case "image/jpeg":
      if (syntax !== undefined && syntax !== "1.2.840.10008.1.2.4.50")
        return bad(`image/jpeg takes transfer-syntax 1.2.840.10008.1.2.4.50, not ${syntax}`);
      return ok("jpeg", "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50");
    case "image/png":
      if (syntax !== undefined) return bad("image/png takes no transfer-syntax");
      return ok("png", "image/png");
    case "application/octet-stream":
      if (syntax !== undefined && syntax !== "*" && syntax !== "1.2.840.10008.1.2.1")
        return bad(`application/octet-stream takes transfer-syntax * or 1.2.840.10008.1.2.1, not ${syntax}`);
      return ok(
        "octet-stream",
        syntax === undefined ? "application/octet-stream" : `application/octet-stream; transfer-syntax=${syntax}`,
      );
    default:
      return bad(`"${text}" is not an export mimeType`);
  }
}

/** A DICOM UID: digits and dots, components without leading zeros, at most 64 characters (PS3.5 §9.1). */
export function isDicomUid(s: string): boolean {
  return s.length <= 64 && /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/.test(s);
}

/** `/studies/UID` or `/studies/UID/series/UID` (what the filter file holds, one a line); an error says why not. */
export function checkFilterPath(p: string): string | undefined {
  const m = /^\/studies\/([^/]+)(?:\/series\/([^/]+))?$/.exec(p);
  if (m === null) return `"${p.slice(0, 200)}" is not /studies/STUDY_UID or /studies/STUDY_UID/series/SERIES_UID`;
  const badUid = [m[1]!, m[2]].find((u) => u !== undefined && !isDicomUid(u));
  return badUid === undefined
    ? undefined
    : `"${badUid.slice(0, 80)}" in ${p.slice(0, 200)} is not a DICOM UID (digits and dots, at most 64)`;
}

/**
 * The filter file's bytes: the paths sorted and without duplicates, one a line, so the same set
 * of studies always makes the same object (and a rerun finds the one it uploaded).
 */
export function filterFileContent(paths: readonly string[]): Buffer {
  return Buffer.from(`${[...new Set(paths)].sort().join("\n")}\n`, "utf8");
}

/** Where hcexport keeps a lane's filter in the bucket: `.hcexport/filters/<lane>-<sha256>.txt` (content-addressed). */
export function filterObjectName(lane: string, content: Buffer): string {
  return `.hcexport/filters/${lane.replaceAll("/", "_")}-${filterDigest(content)}.txt`;
}

/** The SHA-256 of a filter file, hex. */
export function filterDigest(content: Buffer): string {
  return createHash("sha256").update(content).digest("hex");
}

/** The lines of a filter file (`\n` or `\r\n`), blank lines dropped. */
export function filterLines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "");
}
