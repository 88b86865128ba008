import type { IncomingMessage, ServerResponse } from "node:http";
import { MultipartError, MultipartParser, parseContentType } from "../../dicomweb/multipart.ts";
import { ApiError, readBody } from "../http-util.ts";
import { putInstance } from "./import-job.ts";
import type { DicomStoreRecord } from "./model.ts";
import type { DicomJson } from "./qido.ts";
import { isParseFailure, parseStoredInstance } from "./stored-instance.ts";

/**
 * STOW-RS failure reasons (PS3.18 §10.5.3 / PS3.4 Annex C): the instance cannot be parsed
 * (0xC000), it does not belong to the study named in the URL (0xA900), or an instance with that
 * SOP Instance UID is already stored (0x0111, "Duplicate SOP Instance").
 */
export const FAILURE = { cannotUnderstand: 0xc000, studyMismatch: 0xa900, duplicate: 0x0111 } as const;

/** A received part's outcome, for the response dataset. */
type Outcome =
  | { ok: true; sopClassUid: string; sopInstanceUid: string; studyUid: string; seriesUid: string }
  | { ok: false; sopClassUid?: string; sopInstanceUid?: string; reason: number };

/** Largest STOW-RS request body accepted (the Healthcare API's request size limit is 1 GiB). */
const MAX_BODY = 1024 * 1024 * 1024;

/**
 * `POST {store}/dicomWeb/studies[/S]` with `multipart/related; type="application/dicom"` (one
 * Part 10 instance per part) or a single `application/dicom` body. Stores each instance as
 * received and answers the PS3.18 response dataset in DICOM JSON: ReferencedSOPSequence
 * (0008,1199) with each stored instance's RetrieveURL, FailedSOPSequence (0008,1198) with a
 * FailureReason per refused one, and the study's RetrieveURL (0008,1190). Status 200 when all were
 * stored, 202 when some were, 409 when none was.
 */
export async function stow(
  req: IncomingMessage,
  res: ServerResponse,
  store: DicomStoreRecord,
  study: string | undefined,
  webBase: string,
): Promise<void> {
  const parts = await readParts(req);
  const outcomes: Outcome[] = [];
  for (const bytes of parts) {
    const parsed = parseStoredInstance(bytes);
    if (isParseFailure(parsed)) {
      outcomes.push({ ok: false, reason: FAILURE.cannotUnderstand, ...ids(parsed) });
      continue;
    }
    const base = { sopClassUid: parsed.sopClassUid, sopInstanceUid: parsed.sopInstanceUid };
    if (study !== undefined && parsed.studyUid !== study)
      outcomes.push({ ok: false, reason: FAILURE.studyMismatch, ...base });
    else if (store.bySop.has(parsed.sopInstanceUid)) outcomes.push({ ok: false, reason: FAILURE.duplicate, ...base });
    else {
      putInstance(store, parsed);
      outcomes.push({ ok: true, ...base, studyUid: parsed.studyUid, seriesUid: parsed.seriesUid });
    }
  }
  const stored = outcomes.filter((o) => o.ok);
  const failed = outcomes.filter((o) => !o.ok);
  const body: DicomJson = {};
  const studies = new Set(stored.map((o) => o.studyUid));
  const onlyStudy = study ?? (studies.size === 1 ? [...studies][0] : undefined);
  if (onlyStudy !== undefined) body["00081190"] = { vr: "UR", Value: [`${webBase}/studies/${onlyStudy}`] };
  if (failed.length > 0)
    body["00081198"] = {
      vr: "SQ",
      Value: failed.map((f) => ({
        ...(f.sopClassUid === undefined ? {} : { "00081150": { vr: "UI", Value: [f.sopClassUid] } }),
        ...(f.sopInstanceUid === undefined ? {} : { "00081155": { vr: "UI", Value: [f.sopInstanceUid] } }),
        "00081197": { vr: "US", Value: [f.reason] },
      })),
    };
  if (stored.length > 0)
    body["00081199"] = {
      vr: "SQ",
      Value: stored.map((s) => ({
        "00081150": { vr: "UI", Value: [s.sopClassUid] },
        "00081155": { vr: "UI", Value: [s.sopInstanceUid] },
        "00081190": {
          vr: "UR",
          Value: [`${webBase}/studies/${s.studyUid}/series/${s.seriesUid}/instances/${s.sopInstanceUid}`],
        },
      })),
    };
  const status = failed.length === 0 ? 200 : stored.length === 0 ? 409 : 202;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/dicom+json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

function ids(p: { sopClassUid?: string; sopInstanceUid?: string }) {
  return {
    ...(p.sopClassUid === undefined ? {} : { sopClassUid: p.sopClassUid }),
    ...(p.sopInstanceUid === undefined ? {} : { sopInstanceUid: p.sopInstanceUid }),
  };
}

/** The request's instances: the parts of a multipart/related body, or one application/dicom body. */
async function readParts(req: IncomingMessage): Promise<Buffer[]> {
  const ct = parseContentType(req.headers["content-type"]);
  if (ct.type === "application/dicom") return [await readBody(req, MAX_BODY)];
  const type = (ct.params["type"] ?? "").toLowerCase();
  if (ct.type !== "multipart/related" || (type !== "application/dicom" && type !== "")) {
    throw new ApiError(
      415,
      "unsupportedMediaType",
      `STOW-RS takes multipart/related; type="application/dicom" (Part 10 instances), not "${req.headers["content-type"] ?? ""}"`,
      { rpcStatus: "INVALID_ARGUMENT" },
    );
  }
  const boundary = ct.params["boundary"];
  if (boundary === undefined)
    throw new ApiError(400, "invalid", "multipart/related without a boundary parameter", {
      rpcStatus: "INVALID_ARGUMENT",
    });
  const parts: Buffer[] = [];
  let current: Buffer[] | undefined;
  let size = 0;
  try {
    const parser = new MultipartParser(boundary, 200);
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY) throw new ApiError(413, "uploadTooLarge", `STOW-RS request larger than ${MAX_BODY} bytes`);
      for (const ev of parser.push(chunk)) {
        if (ev.kind === "part") current = [];
        else if (ev.kind === "data") current!.push(ev.chunk);
        else {
          parts.push(Buffer.concat(current!));
          current = undefined;
        }
      }
    }
    parser.finish();
  } catch (err) {
    if (err instanceof MultipartError)
      throw new ApiError(400, "invalid", `malformed multipart/related body: ${err.message}`, {
        rpcStatus: "INVALID_ARGUMENT",
      });
    throw err;
  }
  if (parts.length === 0)
    throw new ApiError(400, "invalid", "the STOW-RS request holds no instance", { rpcStatus: "INVALID_ARGUMENT" });
  return parts;
}
