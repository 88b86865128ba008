import { writePart10, type Element } from "./dicom-writer.ts";

/** One generated DICOM instance: UIDs and attributes up front, bytes made on demand (memory stays flat). */
export interface GeneratedInstance {
  readonly index: number;
  readonly studyUid: string;
  readonly seriesUid: string;
  readonly sopInstanceUid: string;
  /** A UUID, like SIIM's anonymised patient ids (also the Patient's Name). */
  readonly patientId: string;
  readonly patientSex: "M" | "F";
  /** Age in years (encoded as AS `038Y`). */
  readonly patientAge: number;
  readonly viewPosition: "PA" | "AP";
  /** Rows = Columns of the 8-bit square image. */
  readonly side: number;
  /** The Part 10 file, regenerated deterministically on each call. */
  data(): Buffer;
}

export interface GeneratorOptions {
  readonly seed: number;
  /** Approximate size of each file in bytes (the real SIIM images are ~150 KB). */
  readonly instanceBytes: number;
  /** Distinguishes stores (train 0, test 1) so their UIDs never collide. */
  readonly storeIndex: number;
}

/**
 * Secondary Capture Image Storage with Modality CR: what the real SIIM files carry (they were
 * converted from NIH ChestX-ray14 PNGs, hence Conversion Type WSD).
 */
export const SOP_CLASS_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7";
/** The SIIM files' UID root (DCMTK's), followed by 2 (study), 3 (series) or 4 (instance). */
export const SIIM_UID_ROOT = "1.2.276.0.7230010.3.1";
const HEADER_BYTES = 900;

/** A small deterministic 32-bit hash for deriving per-instance values from (seed, store, index). */
export function mix(...xs: number[]): number {
  let h = 0x811c9dc5;
  for (const x of xs) {
    h = Math.imul(h ^ (x & 0xffff), 0x01000193);
    h = Math.imul(h ^ (x >>> 16), 0x01000193);
  }
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  return (h ^ (h >>> 12)) >>> 0;
}

/** Image side for a target file size: an 8-bit square image fills what the header leaves. */
export function imageSide(instanceBytes: number): number {
  return Math.max(8, Math.floor(Math.sqrt(Math.max(64, instanceBytes - HEADER_BYTES))));
}

/**
 * Instance `index` of a store. UIDs are shaped like SIIM's: the same
 * `8323329.PID.TIME` tail with the instance ending in N, the study in N-1 and the series in N-2
 * (e.g. instance `1.2.276.0.7230010.3.1.4.8323329.5797.1517875190.762693`, study `….2.….762692`).
 */
export function generateInstance(index: number, options: GeneratorOptions): GeneratedInstance {
  const h = mix(options.seed, options.storeIndex, index);
  const pid = 1000 + (h % 31000);
  const time = 1517875000 + options.storeIndex * 100_000 + index;
  const n = 100_000 + (mix(h, 7) % 900_000);
  const tail = `8323329.${pid}.${time}`;
  const inst = {
    index,
    studyUid: `${SIIM_UID_ROOT}.2.${tail}.${n - 1}`,
    seriesUid: `${SIIM_UID_ROOT}.3.${tail}.${n - 2}`,
    sopInstanceUid: `${SIIM_UID_ROOT}.4.${tail}.${n}`,
    patientId: uuid(h),
    patientSex: h & 1 ? ("M" as const) : ("F" as const),
    patientAge: 18 + (h % 70),
    viewPosition: h & 2 ? ("PA" as const) : ("AP" as const),
    side: imageSide(options.instanceBytes),
  };
  return { ...inst, data: () => renderInstance(inst, h, options.seed) };
}

/** A deterministic version-4-shaped UUID from a hash. */
function uuid(h: number): string {
  const hex = [1, 2, 3, 4].map((k) => mix(h, k).toString(16).padStart(8, "0")).join("");
  const variant = "89ab"[parseInt(hex[16]!, 16) & 3]!;
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/**
 * The shared "radiograph" of a seed and size: a soft gradient with speckle, one row longer than
 * the image so each instance can start at its own offset. Computed once and cached, so an
 * instance costs a copy plus a small per-instance blob instead of a per-pixel RNG pass.
 */
const baseImages = new Map<string, Uint8Array>();
function baseImage(seed: number, side: number): Uint8Array {
  const key = `${seed}:${side}`;
  let img = baseImages.get(key);
  if (img !== undefined) return img;
  img = new Uint8Array(side * side + side);
  const column = new Uint8Array(side);
  for (let x = 0; x < side; x++) column[x] = Math.round(60 * Math.sin((x * Math.PI) / side));
  let s = mix(seed, side) | 1;
  for (let i = 0; i < img.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const y = Math.floor(i / side) % side;
    img[i] = (((y * 160) / side) | 0) + column[i % side]! + (s & 31);
  }
  if (baseImages.size >= 8) baseImages.delete(baseImages.keys().next().value!);
  baseImages.set(key, img);
  return img;
}

type Attributes = Omit<GeneratedInstance, "data">;

function renderInstance(i: Attributes, h: number, seed: number): Buffer {
  const side = i.side;
  const dataset: Element[] = [
    { tag: 0x00080005, vr: "CS", value: "ISO_IR 100" },
    { tag: 0x00080016, vr: "UI", value: SOP_CLASS_SECONDARY_CAPTURE },
    { tag: 0x00080018, vr: "UI", value: i.sopInstanceUid },
    { tag: 0x00080020, vr: "DA", value: "19010101" },
    { tag: 0x00080030, vr: "TM", value: "000000.00" },
    { tag: 0x00080050, vr: "SH", value: "" },
    { tag: 0x00080060, vr: "CS", value: "CR" },
    { tag: 0x00080064, vr: "CS", value: "WSD" },
    { tag: 0x00080090, vr: "PN", value: "" },
    { tag: 0x0008103e, vr: "LO", value: `view: ${i.viewPosition}` },
    { tag: 0x00100010, vr: "PN", value: i.patientId },
    { tag: 0x00100020, vr: "LO", value: i.patientId },
    { tag: 0x00100030, vr: "DA", value: "" },
    { tag: 0x00100040, vr: "CS", value: i.patientSex },
    { tag: 0x00101010, vr: "AS", value: `${String(i.patientAge).padStart(3, "0")}Y` },
    { tag: 0x00180015, vr: "CS", value: "CHEST" },
    { tag: 0x00185101, vr: "CS", value: i.viewPosition },
    { tag: 0x0020000d, vr: "UI", value: i.studyUid },
    { tag: 0x0020000e, vr: "UI", value: i.seriesUid },
    { tag: 0x00200010, vr: "SH", value: "" },
    { tag: 0x00200011, vr: "IS", value: "1" },
    { tag: 0x00200013, vr: "IS", value: "1" },
    { tag: 0x00200020, vr: "CS", value: "" },
    { tag: 0x00280002, vr: "US", value: 1 },
    { tag: 0x00280004, vr: "CS", value: "MONOCHROME2" },
    { tag: 0x00280010, vr: "US", value: side },
    { tag: 0x00280011, vr: "US", value: side },
    { tag: 0x00280030, vr: "DS", value: ["0.168", "0.168"] },
    { tag: 0x00280100, vr: "US", value: 8 },
    { tag: 0x00280101, vr: "US", value: 8 },
    { tag: 0x00280102, vr: "US", value: 7 },
    { tag: 0x00280103, vr: "US", value: 0 },
  ];
  const pixels = {
    length: side * side,
    fill(target: Buffer): void {
      const base = baseImage(seed, side);
      const offset = h % side;
      target.set(base.subarray(offset, offset + side * side));
      // A bright ellipse whose place and size depend on the instance: every image differs.
      const r = Math.max(2, (side / 10) | 0);
      const cx = r + (mix(h, 11) % Math.max(1, side - 2 * r));
      const cy = r + (mix(h, 13) % Math.max(1, side - 2 * r));
      const lift = 40 + (h % 40);
      for (let y = cy - r; y < cy + r; y++) {
        const dy = y - cy;
        const half = Math.floor(Math.sqrt(r * r - dy * dy));
        for (let x = cx - half, p = y * side + x; x < cx + half; x++, p++) target[p] = Math.min(255, target[p]! + lift);
      }
    },
  };
  return writePart10(SOP_CLASS_SECONDARY_CAPTURE, i.sopInstanceUid, dataset, pixels);
}
