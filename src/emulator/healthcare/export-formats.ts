import dicomParser from "dicom-parser";
import { encodeElements, type Element } from "../dataset/dicom-writer.ts";
import type { StoreInstance } from "./model.ts";
import { ApiError } from "../http-util.ts";
import { EXPLICIT_LE, JPEG_BASELINE, NATIVE_TS, pixelsOf } from "./pixels.ts";
import { encodeJpeg, encodePng, frameImage } from "./render.ts";

/**
 * `gcsDestination.mimeType` of a DICOM export (the Healthcare API's `DicomGcsDestination`):
 * what each instance becomes in the bucket and under which name
 * (`…/{study}/{series}/{instance}[/{frame_number}].{extension}`, the frame level only for
 * multi-frame instances).
 */
export type ExportFormat =
  | { readonly kind: "dicom"; readonly transferSyntax: string }
  | { readonly kind: "octet-stream" }
  | { readonly kind: "png" }
  | { readonly kind: "jpeg" };

/** Transfer syntaxes the real API accepts for `application/dicom` (DicomGcsDestination.mimeType). */
const DICOM_TS = new Set([
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
]);
/** Those the emulator writes (as stored, or transcoded from native 8-bit pixels to JPEG Baseline). */
const DICOM_TS_IMPLEMENTED = new Set(["*", EXPLICIT_LE, JPEG_BASELINE]);

/**
 * Parses a mimeType: 400 INVALID_ARGUMENT for what the real API rejects, 501 for what it accepts
 * and the emulator does not produce. Unset: the files as stored.
 */
export function parseExportMimeType(mimeType: unknown): ExportFormat {
  if (mimeType === undefined || mimeType === "") return { kind: "dicom", transferSyntax: "*" };
  if (typeof mimeType !== "string") throw invalid(`gcsDestination.mimeType must be a string`);
  const [type, ...params] = mimeType.split(";").map((s) => s.trim());
  const ts = params
    .find((p) => /^transfer-syntax=/i.test(p))
    ?.split("=")[1]
    ?.trim();
  const extra = params.filter((p) => !/^transfer-syntax=/i.test(p));
  if (extra.length > 0) throw invalid(`unsupported parameter "${extra[0]}" in gcsDestination.mimeType`);
  switch (type?.toLowerCase()) {
    case "application/dicom": {
      const want = ts ?? "*";
      if (!DICOM_TS.has(want)) throw invalid(`unsupported transfer syntax ${want} in gcsDestination.mimeType`);
      if (!DICOM_TS_IMPLEMENTED.has(want))
        throw new ApiError(
          501,
          "notImplemented",
          `the hcexport emulator exports application/dicom as stored (*), 1.2.840.10008.1.2.1 or 1.2.840.10008.1.2.4.50, not ${want}`,
        );
      return { kind: "dicom", transferSyntax: want };
    }
    case "application/octet-stream":
      if (ts !== undefined && ts !== "*" && ts !== EXPLICIT_LE)
        throw invalid(`application/octet-stream takes transfer-syntax * or ${EXPLICIT_LE}, not ${ts}`);
      return { kind: "octet-stream" };
    case "image/jpeg":
      if (ts !== undefined && ts !== JPEG_BASELINE)
        throw invalid(`image/jpeg takes transfer-syntax ${JPEG_BASELINE}, not ${ts}`);
      return { kind: "jpeg" };
    case "image/png":
      if (ts !== undefined) throw invalid("image/png takes no transfer-syntax");
      return { kind: "png" };
    default:
      throw invalid(`unsupported gcsDestination.mimeType ${JSON.stringify(mimeType)}`);
  }
}

export interface ExportObject {
  /** Relative to the prefix: `S/SE/I.dcm`, `S/SE/I.png`, `S/SE/I/2.png`, `S/SE/I`… */
  readonly name: string;
  readonly data: Buffer;
  readonly contentType: string;
}

const EXT = { "octet-stream": "", png: ".png", jpeg: ".jpg" } as const;
const CONTENT_TYPE = { "octet-stream": "application/octet-stream", png: "image/png", jpeg: "image/jpeg" } as const;

/** The objects one instance becomes; throws (the instance counts as failed) when it cannot be converted. */
export function exportObjects(inst: StoreInstance, f: ExportFormat): ExportObject[] {
  const base = `${inst.studyUid}/${inst.seriesUid}/${inst.sopInstanceUid}`;
  const data = inst.data();
  if (f.kind === "dicom") {
    const view = f.transferSyntax === "*" ? undefined : pixelsOf(data);
    let out = data;
    if (view !== undefined && view.transferSyntax !== f.transferSyntax) {
      if (f.transferSyntax !== JPEG_BASELINE || !NATIVE_TS.has(view.transferSyntax))
        throw new Error(`cannot transcode ${view.transferSyntax} to ${f.transferSyntax}`);
      out = transcodeToJpegBaseline(data);
    }
    return [{ name: `${base}.dcm`, data: out, contentType: "application/dicom" }];
  }
  const view = pixelsOf(data);
  const multi = view.frames > 1;
  const objects: ExportObject[] = [];
  for (let n = 1; n <= view.frames; n++) {
    const body =
      f.kind === "octet-stream"
        ? NATIVE_TS.has(view.transferSyntax)
          ? Buffer.from(view.frame(n))
          : Buffer.from(frameImage(view, n).data)
        : f.kind === "png"
          ? encodePng(frameImage(view, n))
          : view.transferSyntax === JPEG_BASELINE
            ? view.frame(n)
            : encodeJpeg(frameImage(view, n));
    objects.push({
      name: `${multi ? `${base}/${n}` : base}${EXT[f.kind]}`,
      data: body,
      contentType: CONTENT_TYPE[f.kind],
    });
  }
  return objects;
}

/**
 * Explicit VR little endian with native 8-bit pixels → JPEG Baseline (1.2.840.10008.1.2.4.50):
 * the file meta names the new transfer syntax, the data set is copied element by element with
 * the image pixel description changed to what the codestream holds (jpeg-js writes 3-component
 * 4:4:4 YCbCr: Samples per Pixel 3, YBR_FULL, Planar Configuration 0, Lossy Image Compression
 * 01), and Pixel Data becomes encapsulated: a Basic Offset Table, one fragment per frame.
 */
export function transcodeToJpegBaseline(part10: Buffer): Buffer {
  const view = pixelsOf(part10);
  if (view.transferSyntax !== EXPLICIT_LE || view.bitsAllocated !== 8)
    throw new Error(`the emulator transcodes only explicit VR little endian 8-bit images to JPEG Baseline`);
  const ds = dicomParser.parseDicom(new Uint8Array(part10.buffer, part10.byteOffset, part10.byteLength));
  const meta: Element[] = [];
  const body: Buffer[] = [];
  const replaced: Record<string, { tag: number; vr: string; value: string | number }> = {
    x00280002: { tag: 0x00280002, vr: "US", value: 3 },
    x00280004: { tag: 0x00280004, vr: "CS", value: "YBR_FULL" },
    x00280006: { tag: 0x00280006, vr: "US", value: 0 },
    x00282110: { tag: 0x00282110, vr: "CS", value: "01" },
  };
  const pending = new Map(Object.entries(replaced));
  const flush = (beforeTag: number) => {
    for (const [key, el] of [...pending].sort((a, b) => a[1].tag - b[1].tag)) {
      if (el.tag >= beforeTag) break;
      body.push(encodeElements([el]));
      pending.delete(key);
    }
  };
  const LONG = new Set(["OB", "OW", "OF", "OD", "OL", "OV", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]);
  const top: Array<{ key: string; tag: number; start: number }> = [];
  for (const key of Object.keys(ds.elements)) {
    const el = ds.elements[key]!;
    const tag = parseInt(key.slice(1), 16);
    if (tag === 0x00020000) continue;
    if (tag < 0x00030000) {
      if (tag === 0x00020010) meta.push({ tag, vr: "UI", value: JPEG_BASELINE });
      else meta.push({ tag, vr: el.vr ?? "UN", value: part10.subarray(el.dataOffset, el.dataOffset + el.length) });
      continue;
    }
    if (tag >= 0x7fe00010) continue;
    top.push({ key, tag, start: el.dataOffset - (LONG.has(el.vr ?? "") ? 12 : 8) });
  }
  top.sort((a, b) => a.start - b.start);
  for (const [i, e] of top.entries()) {
    flush(e.tag);
    if (pending.has(e.key)) {
      body.push(encodeElements([replaced[e.key]!]));
      pending.delete(e.key);
      continue;
    }
    // Copied as encoded, up to the next element (sequences of undefined length included).
    body.push(part10.subarray(e.start, top[i + 1]?.start ?? view.pixelTagOffset));
  }
  flush(0x7fe00010);
  const fragments: Buffer[] = [];
  for (let n = 1; n <= view.frames; n++) {
    const jpg = encodeJpeg(frameImage(view, n));
    const padded = jpg.length % 2 === 0 ? jpg : Buffer.concat([jpg, Buffer.from([0])]);
    const item = Buffer.alloc(8);
    item.writeUInt32LE(0xe000fffe, 0);
    item.writeUInt32LE(padded.length, 4);
    fragments.push(item, padded);
  }
  const pixelHead = Buffer.alloc(12);
  pixelHead.writeUInt32LE(0x00107fe0, 0);
  pixelHead.write("OB", 4, "latin1");
  pixelHead.writeUInt32LE(0xffffffff, 8);
  // Basic Offset Table: each frame's item, from the first fragment's item.
  const bot = Buffer.alloc(8 + 4 * view.frames);
  bot.writeUInt32LE(0xe000fffe, 0);
  bot.writeUInt32LE(4 * view.frames, 4);
  for (let n = 0, at = 0; n < view.frames; n++) {
    bot.writeUInt32LE(at, 8 + 4 * n);
    at += fragments[2 * n]!.length + fragments[2 * n + 1]!.length;
  }
  const seqEnd = Buffer.alloc(8);
  seqEnd.writeUInt32LE(0xe0ddfffe, 0);
  const metaBytes = encodeElements(meta);
  const groupLength = encodeElements([{ tag: 0x00020000, vr: "UL", value: metaBytes.length }]);
  return Buffer.concat([
    Buffer.alloc(128),
    Buffer.from("DICM", "latin1"),
    groupLength,
    metaBytes,
    ...body,
    pixelHead,
    bot,
    ...fragments,
    seqEnd,
  ]);
}

function invalid(message: string): ApiError {
  return new ApiError(400, "invalid", message, { rpcStatus: "INVALID_ARGUMENT" });
}
