/**
 * A streaming structural check of a DICOM Part 10 file (PS3.10 §7): preamble and `DICM`, the
 * File Meta group in explicit VR little endian, then the data set walked element by element in
 * its transfer syntax down to the last byte. It keeps nothing but a few UIDs, so it runs over a
 * stream of any size beside the write.
 *
 * What it proves: the bytes are a complete, well-framed Part 10 file (a truncated or cut-short
 * body, or a damaged element header, cannot end exactly on an element boundary at depth 0), and
 * which instance it is. What it cannot prove: that the value bytes (e.g. pixel data) are the
 * server's — only a digest can (see `digest.ts`).
 */

export const IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2";
export const EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2";
export const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99";

/** UIDs the inspector records (depth 0 only). */
export interface Part10Uids {
  readonly transferSyntax?: string;
  readonly mediaStorageSopInstanceUid?: string;
  readonly sopInstanceUid?: string;
  readonly studyInstanceUid?: string;
  readonly seriesInstanceUid?: string;
}

export type Part10Result =
  | ({ readonly ok: true } & Part10Uids & { readonly bytes: number })
  | { readonly ok: false; readonly problem: string; readonly bytes: number };

/** VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 table 7.1-1). */
const LONG_VRS = new Set(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]);
const UNDEFINED = 0xffffffff;
const ITEM = 0xfffee000;
const ITEM_DELIMITER = 0xfffee00d;
const SEQUENCE_DELIMITER = 0xfffee0dd;
const CAPTURED: ReadonlyMap<number, keyof Part10Uids> = new Map([
  [0x00020003, "mediaStorageSopInstanceUid"],
  [0x00020010, "transferSyntax"],
  [0x00080018, "sopInstanceUid"],
  [0x0020000d, "studyInstanceUid"],
  [0x0020000e, "seriesInstanceUid"],
]);
const MAX_CAPTURE = 256;
/** Nesting deeper than this is not a real file; it bounds the work a hostile file can cause. */
const MAX_DEPTH = 64;

type Phase = "preamble" | "header" | "value" | "opaque" | "failed";
type Encoding = { readonly explicit: boolean; readonly little: boolean };
const META: Encoding = { explicit: true, little: true };

export class Part10Inspector {
  #phase: Phase = "preamble";
  #pending: Buffer = Buffer.alloc(0);
  #need = 132;
  #inMeta = true;
  #dataset: Encoding = META;
  #depth = 0;
  #skip = 0;
  #capture: { key: keyof Part10Uids; parts: Buffer[]; left: number } | undefined;
  #problem: string | undefined;
  #bytes = 0;
  #pastHeader = false;
  readonly #uids: { -readonly [K in keyof Part10Uids]?: string } = {};

  /** UIDs seen so far. */
  get uids(): Part10Uids {
    return this.#uids;
  }

  /**
   * True once the walk has passed the Study/Series/SOP Instance UIDs' place at depth 0 (or can
   * never see them): what `uids` holds then is final, so a caller may name the file.
   */
  get identified(): boolean {
    return this.#pastHeader || this.#phase === "opaque" || this.#phase === "failed";
  }

  get problem(): string | undefined {
    return this.#problem;
  }

  update(chunk: Uint8Array): void {
    this.#bytes += chunk.byteLength;
    let buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    while (buf.length > 0) {
      switch (this.#phase) {
        case "failed":
        case "opaque":
          return;
        case "value": {
          const n = Math.min(this.#skip, buf.length);
          if (this.#capture !== undefined) this.#capture.parts.push(Buffer.from(buf.subarray(0, n)));
          this.#skip -= n;
          buf = buf.subarray(n);
          if (this.#skip === 0) this.#endValue();
          break;
        }
        default: {
          const want = this.#need - this.#pending.length;
          const take = buf.subarray(0, want);
          this.#pending = this.#pending.length === 0 ? Buffer.from(take) : Buffer.concat([this.#pending, take]);
          buf = buf.subarray(take.length);
          if (this.#pending.length === this.#need) this.#parse();
        }
      }
    }
  }

  /** Ends the stream: a file is whole only if it ends on an element boundary outside any sequence. */
  finish(): Part10Result {
    const bytes = this.#bytes;
    if (this.#phase === "failed") return { ok: false, problem: this.#problem!, bytes };
    if (this.#phase === "preamble")
      return {
        ok: false,
        problem: `not a DICOM Part 10 file: ${bytes} bytes, too short for the preamble and 'DICM'`,
        bytes,
      };
    if (this.#phase === "value")
      return {
        ok: false,
        problem: `truncated: ${this.#skip} bytes of an element's value are missing at the end`,
        bytes,
      };
    if (this.#phase === "header" && this.#pending.length > 0)
      return {
        ok: false,
        problem: `truncated: the file ends inside an element header (${this.#pending.length} of ${this.#need} bytes)`,
        bytes,
      };
    if (this.#depth > 0)
      return {
        ok: false,
        problem: `truncated: the file ends inside ${this.#depth} open sequence(s) or item(s)`,
        bytes,
      };
    if (this.#inMeta && this.#phase !== "opaque")
      return { ok: false, problem: "the file has a File Meta group but no data set", bytes };
    return { ok: true, ...this.#uids, bytes };
  }

  #fail(problem: string): void {
    this.#phase = "failed";
    this.#problem = problem;
    this.#pending = Buffer.alloc(0);
  }

  #parse(): void {
    const p = this.#pending;
    if (this.#phase === "preamble") {
      if (p.toString("latin1", 128, 132) !== "DICM")
        return this.#fail("not a DICOM Part 10 file: no 'DICM' after the 128-byte preamble");
      this.#phase = "header";
      return this.#nextHeader(8);
    }
    // A header: 8 bytes are read first; a long explicit VR needs 4 more.
    let enc = this.#inMeta ? META : this.#dataset;
    if (this.#inMeta && p.readUInt16LE(0) !== 0x0002) {
      // The first element after group 0002: the data set starts here, in the transfer syntax.
      this.#inMeta = false;
      const ts = this.#uids.transferSyntax;
      if (ts === undefined) return this.#fail("the File Meta group has no Transfer Syntax UID (0002,0010)");
      if (ts === DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN) {
        // The data set is a deflate stream: not walked (the meta group was whole).
        this.#phase = "opaque";
        this.#pastHeader = true;
        return;
      }
      this.#dataset = { explicit: ts !== IMPLICIT_VR_LITTLE_ENDIAN, little: ts !== EXPLICIT_VR_BIG_ENDIAN };
      enc = this.#dataset;
    }
    const group = enc.little ? p.readUInt16LE(0) : p.readUInt16BE(0);
    const element = enc.little ? p.readUInt16LE(2) : p.readUInt16BE(2);
    const tag = ((group << 16) | element) >>> 0;
    let length: number;
    if (group === 0xfffe) {
      // Item and delimiters: no VR in any transfer syntax.
      length = enc.little ? p.readUInt32LE(4) : p.readUInt32BE(4);
      if (tag === ITEM_DELIMITER || tag === SEQUENCE_DELIMITER) {
        if (length !== 0) return this.#fail(`a delimitation item (${hex(tag)}) with a non-zero length`);
        if (this.#depth === 0) return this.#fail(`a delimitation item (${hex(tag)}) outside any sequence`);
        this.#depth--;
        return this.#nextHeader(8);
      }
      if (tag !== ITEM) return this.#fail(`an unknown item tag ${hex(tag)}`);
      if (length === UNDEFINED) return this.#open();
      return this.#value(tag, length);
    }
    if (!enc.explicit) {
      length = p.readUInt32LE(4);
    } else {
      const vr = p.toString("latin1", 4, 6);
      if (!/^[A-Z]{2}$/.test(vr)) return this.#fail(`element ${hex(tag)} has an invalid VR ${JSON.stringify(vr)}`);
      if (LONG_VRS.has(vr)) {
        if (p.length === 8) return this.#nextHeader(12);
        length = enc.little ? p.readUInt32LE(8) : p.readUInt32BE(8);
      } else {
        length = enc.little ? p.readUInt16LE(6) : p.readUInt16BE(6);
      }
    }
    if (this.#depth === 0 && !this.#inMeta && tag > 0x0020000e) this.#pastHeader = true;
    if (length === UNDEFINED) return this.#open();
    return this.#value(tag, length);
  }

  #open(): void {
    if (++this.#depth > MAX_DEPTH) return this.#fail(`sequences nested deeper than ${MAX_DEPTH}`);
    this.#nextHeader(8);
  }

  #value(tag: number, length: number): void {
    const key = this.#depth === 0 ? CAPTURED.get(tag) : undefined;
    this.#capture = key !== undefined && length <= MAX_CAPTURE ? { key, parts: [], left: length } : undefined;
    if (length === 0) return this.#endValue();
    this.#phase = "value";
    this.#skip = length;
    this.#pending = Buffer.alloc(0);
  }

  #endValue(): void {
    if (this.#capture !== undefined) {
      this.#uids[this.#capture.key] = Buffer.concat(this.#capture.parts)
        .toString("latin1")
        .replace(/[\0 ]+$/, "");
      this.#capture = undefined;
    }
    this.#phase = "header";
    this.#nextHeader(8);
  }

  #nextHeader(need: number): void {
    if (need === 12) {
      // keep the 8 bytes read so far
      this.#need = 12;
      return;
    }
    this.#phase = "header";
    this.#need = need;
    this.#pending = Buffer.alloc(0);
  }
}

function hex(tag: number): string {
  const s = tag.toString(16).toUpperCase().padStart(8, "0");
  return `(${s.slice(0, 4)},${s.slice(4)})`;
}

/** Inspects a whole buffer (tests, small files). */
export function inspectPart10(data: Uint8Array): Part10Result {
  const i = new Part10Inspector();
  i.update(data);
  return i.finish();
}
