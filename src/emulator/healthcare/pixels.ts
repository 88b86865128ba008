import dicomParser from "dicom-parser";
import { ApiError } from "../http-util.ts";

/** Transfer syntaxes whose Pixel Data is native (uncompressed, little endian). */
export const NATIVE_TS = new Set(["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]);
export const EXPLICIT_LE = "1.2.840.10008.1.2.1";
export const JPEG_BASELINE = "1.2.840.10008.1.2.4.50";

/** An instance's image: what rendering and frame retrieval need, read from its Part 10 bytes. */
export interface PixelView {
  readonly transferSyntax: string;
  readonly rows: number;
  readonly columns: number;
  readonly samplesPerPixel: number;
  readonly bitsAllocated: number;
  readonly bitsStored: number;
  readonly pixelRepresentation: number;
  readonly photometric: string;
  readonly frames: number;
  readonly windowCenter?: number;
  readonly windowWidth?: number;
  readonly rescaleSlope: number;
  readonly rescaleIntercept: number;
  /** Byte offset of the Pixel Data element's tag (everything before it is the data set without pixels). */
  readonly pixelTagOffset: number;
  /** Frame `n` (1-based) as stored: native bytes, or the compressed bitstream of an encapsulated frame. */
  frame(n: number): Buffer;
}

/**
 * Parses Part 10 bytes with dicom-parser (the Cornerstone project's parser: explicit and implicit
 * VR, encapsulated pixel data with or without a Basic Offset Table). Throws a 4xx ApiError for an
 * instance without an image.
 */
export function pixelsOf(part10: Buffer): PixelView {
  const ds = dicomParser.parseDicom(new Uint8Array(part10.buffer, part10.byteOffset, part10.byteLength));
  const el = ds.elements["x7fe00010"];
  if (el === undefined)
    throw new ApiError(400, "invalid", "the instance has no Pixel Data", { rpcStatus: "INVALID_ARGUMENT" });
  const num = (tag: string, dflt: number) => {
    const v = ds.elements[tag] === undefined ? undefined : ds.uint16(tag);
    return v === undefined || Number.isNaN(v) ? dflt : v;
  };
  const float = (tag: string) => {
    const v = ds.string(tag);
    const n = v === undefined ? NaN : Number(v.split("\\")[0]);
    return Number.isFinite(n) ? n : undefined;
  };
  const rows = num("x00280010", 0);
  const columns = num("x00280011", 0);
  const samplesPerPixel = num("x00280002", 1);
  const bitsAllocated = num("x00280100", 8);
  const frames = Math.max(1, Number(ds.string("x00280008") ?? "1") || 1);
  const transferSyntax = ds.string("x00020010") ?? EXPLICIT_LE;
  const frameBytes = (rows * columns * samplesPerPixel * bitsAllocated) / 8;
  const encapsulated = el.encapsulatedPixelData === true;
  const bot =
    encapsulated && frames > 1 && (el.basicOffsetTable?.length ?? 0) === 0
      ? dicomParser.createJPEGBasicOffsetTable(ds, el)
      : undefined;
  const wc = float("x00281050");
  const ww = float("x00281051");
  return {
    transferSyntax,
    rows,
    columns,
    samplesPerPixel,
    bitsAllocated,
    bitsStored: num("x00280101", bitsAllocated),
    pixelRepresentation: num("x00280103", 0),
    photometric: (ds.string("x00280004") ?? "MONOCHROME2").trim(),
    frames,
    ...(wc === undefined ? {} : { windowCenter: wc }),
    ...(ww === undefined ? {} : { windowWidth: ww }),
    rescaleSlope: float("x00281053") ?? 1,
    rescaleIntercept: float("x00281052") ?? 0,
    // Explicit VR: tag, VR, 2 reserved, 4-byte length (OB/OW); implicit VR: tag and length.
    pixelTagOffset: el.dataOffset - (transferSyntax === "1.2.840.10008.1.2" ? 8 : 12),
    frame(n) {
      if (!Number.isInteger(n) || n < 1 || n > frames)
        throw new ApiError(400, "invalid", `frame ${n} does not exist: the instance has ${frames} frame(s)`, {
          rpcStatus: "INVALID_ARGUMENT",
        });
      if (encapsulated) {
        const bytes =
          frames === 1 && (el.basicOffsetTable?.length ?? 0) === 0
            ? dicomParser.readEncapsulatedPixelDataFromFragments(ds, el, 0, el.fragments?.length ?? 1)
            : dicomParser.readEncapsulatedImageFrame(ds, el, n - 1, bot);
        return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      }
      const start = el.dataOffset + (n - 1) * frameBytes;
      return part10.subarray(start, start + frameBytes);
    },
  };
}

/** The image pixel description of an instance in the DICOM JSON model (for WADO metadata), read from its bytes. */
export function imageAttributes(part10: Buffer): Record<string, { vr: string; Value?: unknown[] }> {
  let v: PixelView;
  try {
    v = pixelsOf(part10);
  } catch {
    return {};
  }
  return {
    "00280002": { vr: "US", Value: [v.samplesPerPixel] },
    "00280004": { vr: "CS", Value: [v.photometric] },
    "00280008": { vr: "IS", Value: [v.frames] },
    "00280010": { vr: "US", Value: [v.rows] },
    "00280011": { vr: "US", Value: [v.columns] },
    "00280100": { vr: "US", Value: [v.bitsAllocated] },
    "00280101": { vr: "US", Value: [v.bitsStored] },
    "00280103": { vr: "US", Value: [v.pixelRepresentation] },
  };
}
