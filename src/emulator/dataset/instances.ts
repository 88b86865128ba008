import { writePart10, type Element } from "./dicom-writer.ts";

/** One generated DICOM instance: UIDs up front, bytes made on demand (memory stays flat). */
export interface GeneratedInstance {
  readonly index: number;
  readonly studyUid: string;
  readonly seriesUid: string;
  readonly sopInstanceUid: string;
  readonly patientId: string;
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

/** Secondary Capture, with Modality CR: what the real SIIM files carry. */
export const SOP_CLASS_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7";
const UID_ROOT = "1.2.276.0.7230010.3.1";

/** A small deterministic 32-bit hash for deriving per-instance values from (seed, store, index). */
function mix(...xs: number[]): number {
  let h = 0x811c9dc5;
  for (const x of xs) {
    h = Math.imul(h ^ (x & 0xffff), 0x01000193);
    h = Math.imul(h ^ (x >>> 16), 0x01000193);
  }
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  return (h ^ (h >>> 12)) >>> 0;
}

/** Instance `index` of a store: UIDs shaped like SIIM's (`1.2.276.0.7230010.3.1.{2,3,4}.8323329.PID.TIME.N`). */
export function generateInstance(index: number, options: GeneratorOptions): GeneratedInstance {
  const h = mix(options.seed, options.storeIndex, index);
  const pid = 1000 + (h % 31000);
  const time = 1517875000 + options.storeIndex * 100_000 + index;
  const n = 100_000 + (mix(h, 7) % 900_000);
  const tail = `8323329.${pid}.${time}.${n}`;
  const studyUid = `${UID_ROOT}.2.${tail}`;
  const seriesUid = `${UID_ROOT}.3.${tail}`;
  const sopInstanceUid = `${UID_ROOT}.4.${tail}`;
  const patientId = `${(h >>> 8).toString(16).padStart(6, "0")}-${options.storeIndex}-${index}`;
  return {
    index,
    studyUid,
    seriesUid,
    sopInstanceUid,
    patientId,
    data: () => renderInstance({ index, h, studyUid, seriesUid, sopInstanceUid, patientId }, options),
  };
}

function renderInstance(
  i: { index: number; h: number; studyUid: string; seriesUid: string; sopInstanceUid: string; patientId: string },
  options: GeneratorOptions,
): Buffer {
  // ~900 bytes of header; the rest is an 8-bit square image.
  const side = Math.max(8, Math.floor(Math.sqrt(Math.max(64, options.instanceBytes - 900))));
  const pixels = new Uint8Array(side * side);
  const column = new Uint8Array(side);
  for (let x = 0; x < side; x++) column[x] = Math.round(60 * Math.sin((x * Math.PI) / side));
  let s = i.h | 1;
  for (let y = 0; y < side; y++) {
    const row = y * side;
    const base = ((y * 160) / side) | 0;
    for (let x = 0; x < side; x++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      // a soft gradient with speckle: looks like a radiograph, compresses like one
      pixels[row + x] = (base + column[x]! + (s & 31)) & 0xff;
    }
  }
  const sex = i.h & 1 ? "M" : "F";
  const view = i.h & 2 ? "PA" : "AP";
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
    { tag: 0x0008103e, vr: "LO", value: `view: ${view}` },
    { tag: 0x00100010, vr: "PN", value: i.patientId },
    { tag: 0x00100020, vr: "LO", value: i.patientId },
    { tag: 0x00100030, vr: "DA", value: "" },
    { tag: 0x00100040, vr: "CS", value: sex },
    { tag: 0x00101010, vr: "AS", value: String(18 + (i.h % 70)).padStart(3, "0") + "Y" },
    { tag: 0x00180015, vr: "CS", value: "CHEST" },
    { tag: 0x00185101, vr: "CS", value: view },
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
    { tag: 0x7fe00010, vr: "OB", value: pixels },
  ];
  return writePart10(SOP_CLASS_SECONDARY_CAPTURE, i.sopInstanceUid, dataset);
}
