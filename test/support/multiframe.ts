import { writePart10 } from "../../src/emulator/dataset/dicom-writer.ts";
import { SOP_CLASS_SECONDARY_CAPTURE, type GeneratedInstance } from "../../src/emulator/dataset/instances.ts";

/** Multi-frame Secondary Capture (8-bit, MONOCHROME2): frame `n` (1-based) is filled by `pixel(n, i)`. */
export function multiFrameInstance(
  k: number,
  o: { frames: number; rows: number; columns: number; pixel?: (frame: number, i: number) => number },
): GeneratedInstance & { framePixels(n: number): Buffer } {
  const root = "1.2.826.0.1.3680043.10.1511.77";
  const inst = {
    index: k,
    studyUid: `${root}.1.${k + 1}`,
    seriesUid: `${root}.2.${k + 1}`,
    sopInstanceUid: `${root}.3.${k + 1}`,
    patientId: `MF-${k + 1}`,
    patientSex: "F" as const,
    patientAge: 40,
    viewPosition: "PA" as const,
    side: o.rows,
  };
  const pixel = o.pixel ?? ((f: number, i: number) => (f * 53 + i * 7 + k) & 0xff);
  const frameBytes = o.rows * o.columns;
  const framePixels = (n: number) => {
    const b = Buffer.alloc(frameBytes);
    for (let i = 0; i < frameBytes; i++) b[i] = pixel(n, i);
    return b;
  };
  const data = () =>
    writePart10(
      SOP_CLASS_SECONDARY_CAPTURE,
      inst.sopInstanceUid,
      [
        { tag: 0x00080016, vr: "UI", value: SOP_CLASS_SECONDARY_CAPTURE },
        { tag: 0x00080018, vr: "UI", value: inst.sopInstanceUid },
        { tag: 0x00080060, vr: "CS", value: "OT" },
        { tag: 0x00100010, vr: "PN", value: `Multi^Frame${k + 1}` },
        { tag: 0x00100020, vr: "LO", value: inst.patientId },
        { tag: 0x0020000d, vr: "UI", value: inst.studyUid },
        { tag: 0x0020000e, vr: "UI", value: inst.seriesUid },
        { tag: 0x00200011, vr: "IS", value: "1" },
        { tag: 0x00200013, vr: "IS", value: "1" },
        { tag: 0x00280002, vr: "US", value: 1 },
        { tag: 0x00280004, vr: "CS", value: "MONOCHROME2" },
        { tag: 0x00280008, vr: "IS", value: String(o.frames) },
        { tag: 0x00280010, vr: "US", value: o.rows },
        { tag: 0x00280011, vr: "US", value: o.columns },
        { tag: 0x00280100, vr: "US", value: 8 },
        { tag: 0x00280101, vr: "US", value: 8 },
        { tag: 0x00280102, vr: "US", value: 7 },
        { tag: 0x00280103, vr: "US", value: 0 },
      ],
      {
        length: frameBytes * o.frames,
        fill: (t) => {
          for (let n = 1; n <= o.frames; n++) framePixels(n).copy(t, (n - 1) * frameBytes);
        },
      },
    );
  return { ...inst, data, framePixels };
}
