/** Summary of a SIIM annotations CSV (`ImageId, EncodedPixels`). */
export interface AnnotationsSummary {
  readonly images: number;
  readonly imagesWithPneumothorax: number;
  readonly masks: number;
  /** Rows that could not be read, with 1-based line numbers (at most 100 kept). */
  readonly malformed: ReadonlyArray<{ readonly line: number; readonly reason: string }>;
  readonly malformedCount: number;
}

/**
 * Reads the SIIM CSV without trusting it: `-1` means no pneumothorax, otherwise the value is
 * run-length pairs (`start length …`); several rows for one image are several masks. Malformed
 * rows are reported with their line numbers, never thrown.
 */
export function summarizeAnnotations(csv: string): AnnotationsSummary {
  const lines = csv.replace(/^\uFEFF/, "").split(/\r?\n/);
  const masksByImage = new Map<string, number>();
  const malformed: Array<{ line: number; reason: string }> = [];
  let malformedCount = 0;
  const bad = (line: number, reason: string) => {
    malformedCount++;
    if (malformed.length < 100) malformed.push({ line, reason });
  };
  const header = (lines[0] ?? "").split(",").map((s) => s.trim());
  if (header[0] !== "ImageId" || header[1] !== "EncodedPixels")
    bad(1, `expected the header "ImageId, EncodedPixels", got "${(lines[0] ?? "").slice(0, 80)}"`);
  for (let i = 1; i < lines.length; i++) {
    const text = lines[i]!;
    if (text.trim() === "") continue;
    const comma = text.indexOf(",");
    if (comma < 0) {
      bad(i + 1, "no comma");
      continue;
    }
    const id = text.slice(0, comma).trim();
    const rle = text.slice(comma + 1).trim();
    if (!/^\d+(\.\d+)*$/.test(id) || id.length > 64) {
      bad(i + 1, `ImageId "${id.slice(0, 80)}" is not a DICOM UID`);
      continue;
    }
    if (rle === "-1") {
      masksByImage.set(id, masksByImage.get(id) ?? 0);
      continue;
    }
    const nums = rle.split(/\s+/);
    if (nums.length % 2 !== 0 || !nums.every((n) => /^\d+$/.test(n))) {
      bad(i + 1, "EncodedPixels is neither -1 nor pairs of whole numbers");
      continue;
    }
    masksByImage.set(id, (masksByImage.get(id) ?? 0) + 1);
  }
  let withPneumothorax = 0;
  let masks = 0;
  for (const n of masksByImage.values()) {
    if (n > 0) withPneumothorax++;
    masks += n;
  }
  return { images: masksByImage.size, imagesWithPneumothorax: withPneumothorax, masks, malformed, malformedCount };
}
