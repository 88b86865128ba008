import type { GeneratedInstance } from "./instances.ts";

/**
 * The annotations CSV matching generated instances, shaped like SIIM's `train-rle.csv`:
 * header `ImageId, EncodedPixels`, one row per mask, ` -1` for images without pneumothorax,
 * otherwise run-length pairs `start length start length …`. About 22 % of images are positive
 * (as in SIIM), some with several masks. Deterministic.
 */
export function annotationsCsv(instances: Iterable<GeneratedInstance>, seed: number): string {
  const lines = ["ImageId, EncodedPixels"];
  for (const inst of instances) {
    const h = hash(`${seed}:${inst.sopInstanceUid}`);
    if (h % 100 >= 22) {
      lines.push(`${inst.sopInstanceUid}, -1`);
      continue;
    }
    const masks = 1 + (h % 3 === 0 ? 1 : 0) + (h % 11 === 0 ? 1 : 0);
    for (let m = 0; m < masks; m++) {
      const runs: number[] = [];
      let x = hash(`${h}:${m}`);
      const pairs = 3 + (x % 6);
      for (let p = 0; p < pairs; p++) {
        x = hash(`${x}`);
        runs.push(100 + (x % 5000), 1 + ((x >>> 12) % 40));
      }
      lines.push(`${inst.sopInstanceUid}, ${runs.join(" ")}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

/** Counts as a consumer would: images, images with pneumothorax, masks. */
export function annotationStats(csv: string): { images: number; positive: number; masks: number } {
  const byImage = new Map<string, number>();
  for (const line of csv.split("\n").slice(1)) {
    if (line.trim() === "") continue;
    const [id, rle] = line.split(",").map((s) => s.trim());
    const masks = rle === "-1" ? 0 : 1;
    byImage.set(id!, (byImage.get(id!) ?? 0) + masks);
  }
  let positive = 0;
  let masks = 0;
  for (const n of byImage.values()) {
    if (n > 0) positive++;
    masks += n;
  }
  return { images: byImage.size, positive, masks };
}

function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
