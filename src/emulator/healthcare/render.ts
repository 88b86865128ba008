import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import { ApiError } from "../http-util.ts";
import { JPEG_BASELINE, NATIVE_TS, type PixelView } from "./pixels.ts";

/** An 8-bit image ready to encode: 1 (gray) or 3 (RGB) interleaved channels. */
export interface Image8 {
  readonly width: number;
  readonly height: number;
  readonly channels: 1 | 3;
  readonly data: Uint8Array;
}

function notImplemented(message: string): ApiError {
  return new ApiError(501, "notImplemented", message);
}

/**
 * One frame as an 8-bit image, the way a viewer shows it by default (PS3.18 §8.3.5 rendered
 * media): Modality LUT (rescale), then the first Window Center/Width (or the frame's range),
 * MONOCHROME1 inverted. Native pixel data (8/16 bits, signed or not, gray or RGB) and JPEG
 * Baseline frames (decoded with jpeg-js) are rendered; other compressions are 501.
 */
export function frameImage(view: PixelView, n: number): Image8 {
  const raw = view.frame(n);
  const { rows: height, columns: width } = view;
  if (view.transferSyntax === JPEG_BASELINE) {
    const img = jpeg.decode(raw, { useTArray: true, formatAsRGBA: true });
    const channels = view.samplesPerPixel === 3 ? 3 : 1;
    const data = new Uint8Array(img.width * img.height * channels);
    for (let p = 0, q = 0; p < data.length; p += channels, q += 4)
      for (let c = 0; c < channels; c++) data[p + c] = img.data[q + c]!;
    return { width: img.width, height: img.height, channels, data };
  }
  if (!NATIVE_TS.has(view.transferSyntax))
    throw notImplemented(`the emulator cannot render pixel data in transfer syntax ${view.transferSyntax}`);
  if (view.samplesPerPixel === 3) {
    if (view.bitsAllocated !== 8) throw notImplemented("the emulator renders RGB images of 8 bits only");
    return { width, height, channels: 3, data: new Uint8Array(raw.subarray(0, width * height * 3)) };
  }
  if (view.samplesPerPixel !== 1 || (view.bitsAllocated !== 8 && view.bitsAllocated !== 16))
    throw notImplemented(`the emulator cannot render ${view.samplesPerPixel}×${view.bitsAllocated}-bit samples`);
  const count = width * height;
  const signed = view.pixelRepresentation === 1;
  const plain = view.rescaleSlope === 1 && view.rescaleIntercept === 0 && view.windowWidth === undefined;
  if (view.bitsAllocated === 8 && !signed && plain && view.photometric !== "MONOCHROME1")
    return { width, height, channels: 1, data: new Uint8Array(raw.subarray(0, count)) };
  const values = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const v =
      view.bitsAllocated === 8
        ? signed
          ? raw.readInt8(i)
          : raw[i]!
        : signed
          ? raw.readInt16LE(2 * i)
          : raw.readUInt16LE(2 * i);
    values[i] = v * view.rescaleSlope + view.rescaleIntercept;
  }
  let lo: number;
  let hi: number;
  if (view.windowCenter !== undefined && view.windowWidth !== undefined && view.windowWidth >= 1) {
    lo = view.windowCenter - 0.5 - (view.windowWidth - 1) / 2;
    hi = view.windowCenter - 0.5 + (view.windowWidth - 1) / 2;
  } else if (view.bitsAllocated === 8 && view.rescaleSlope === 1 && view.rescaleIntercept === 0 && !signed) {
    [lo, hi] = [0, 255];
  } else {
    lo = Infinity;
    hi = -Infinity;
    for (const v of values) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  const span = Math.max(hi - lo, 1e-9);
  const invert = view.photometric === "MONOCHROME1";
  const data = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const g = Math.round(Math.min(1, Math.max(0, (values[i]! - lo) / span)) * 255);
    data[i] = invert ? 255 - g : g;
  }
  return { width, height, channels: 1, data };
}

function rgba(img: Image8): Buffer {
  const out = Buffer.alloc(img.width * img.height * 4);
  for (let p = 0, q = 0; q < out.length; p += img.channels, q += 4) {
    out[q] = img.data[p]!;
    out[q + 1] = img.data[p + (img.channels === 3 ? 1 : 0)]!;
    out[q + 2] = img.data[p + (img.channels === 3 ? 2 : 0)]!;
    out[q + 3] = 255;
  }
  return out;
}

/** PNG (pngjs), 8-bit gray or RGB, no alpha. */
export function encodePng(img: Image8): Buffer {
  const png = new PNG({ width: img.width, height: img.height });
  png.data = rgba(img);
  return PNG.sync.write(png, { colorType: img.channels === 3 ? 2 : 0, inputHasAlpha: true });
}

/** JPEG baseline (jpeg-js), quality 90. */
export function encodeJpeg(img: Image8, quality = 90): Buffer {
  return Buffer.from(jpeg.encode({ width: img.width, height: img.height, data: rgba(img) }, quality).data);
}

/** A frame rendered as `image/png` or `image/jpeg`; a JPEG Baseline frame asked as JPEG is served as stored. */
export function renderFrame(view: PixelView, n: number, type: "image/png" | "image/jpeg"): Buffer {
  if (type === "image/jpeg" && view.transferSyntax === JPEG_BASELINE) return view.frame(n);
  const img = frameImage(view, n);
  return type === "image/png" ? encodePng(img) : encodeJpeg(img);
}
