import { UsageError } from "../core/errors.ts";
import { checkUid } from "./search.ts";

/** What `dicomweb get` fetches: a study, a series, an instance, or frames of an instance. */
export interface GetTarget {
  readonly study: string;
  readonly series?: string;
  readonly instance?: string;
  /** 1-based frame numbers, in the order asked. */
  readonly frames?: readonly number[];
}

/** Parses `studies/S[/series/SE[/instances/I[/frames/N[,M…]]]]` (UIDs checked: they become path segments). */
export function parseGetPath(p: string): GetTarget {
  const parts = p.replace(/^\/+|\/+$/g, "").split("/");
  const names = ["studies", "series", "instances", "frames"];
  if (
    parts.length % 2 !== 0 ||
    parts.length < 2 ||
    parts.length > 8 ||
    parts.some((x, i) => i % 2 === 0 && x !== names[i / 2])
  )
    throw new UsageError(`"${p.slice(0, 200)}" is not studies/S[/series/SE[/instances/I[/frames/N]]]`);
  const uid = (what: string, v: string) => {
    const problem = checkUid(v);
    if (problem !== undefined) throw new UsageError(`the ${what} UID "${v.slice(0, 80)}" is ${problem}`);
    return v;
  };
  let frames: number[] | undefined;
  if (parts.length === 8) {
    frames = parts[7]!.split(",").map((f) => (/^[1-9][0-9]{0,8}$/.test(f) ? Number(f) : NaN));
    if (frames.some((f) => Number.isNaN(f)) || new Set(frames).size !== frames.length)
      throw new UsageError(`frames "${parts[7]!.slice(0, 80)}": distinct frame numbers from 1, comma-separated`);
  }
  return {
    study: uid("study", parts[1]!),
    ...(parts.length >= 4 ? { series: uid("series", parts[3]!) } : {}),
    ...(parts.length >= 6 ? { instance: uid("SOP instance", parts[5]!) } : {}),
    ...(frames === undefined ? {} : { frames }),
  };
}

/** The WADO-RS path of a target (relative to the service base), without `/frames`. */
export function wadoPathOf(t: GetTarget): string {
  let s = `studies/${t.study}`;
  if (t.series !== undefined) s += `/series/${t.series}`;
  if (t.instance !== undefined) s += `/instances/${t.instance}`;
  return s;
}

/** File extension of a frame part by its media type (PS3.18 table 8.7.3-2 image types). */
export function frameExtension(contentType: string): string | undefined {
  const t = contentType.split(";")[0]!.trim().toLowerCase();
  const map: Record<string, string> = {
    "application/octet-stream": "raw",
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/jls": "jls",
    "image/jp2": "jp2",
    "image/jpx": "jpx",
    "image/jxl": "jxl",
    "image/dicom-rle": "rle",
  };
  return map[t];
}

/** Whether bytes look like a whole PNG or JPEG (signature and end marker). */
export function imageComplete(type: "png" | "jpeg", b: Buffer): boolean {
  if (type === "png")
    return (
      b.length > 20 &&
      b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) &&
      b.subarray(b.length - 8, b.length - 4).toString("latin1") === "IEND"
    );
  return b.length > 4 && b[0] === 0xff && b[1] === 0xd8 && b[b.length - 2] === 0xff && b[b.length - 1] === 0xd9;
}
