/**
 * Keyword ↔ tag for the attributes QIDO-RS searches match and return: the study, series and
 * instance query keys and return attributes the standard requires (PS3.18 tables 10.6.1-5 and
 * 10.6.3-3), the Healthcare API's conformance statement lists, plus the image attributes a
 * search commonly includes. A fixed table rather than a whole DICOM dictionary (dcmjs ships one
 * of ~5,000 entries, ~1 MB of JavaScript to load for a CLI that starts in milliseconds): any
 * other attribute is given and shown by its 8-hex-digit tag, which every server accepts.
 */
const TABLE = [
  ["SpecificCharacterSet", "00080005"],
  ["ImageType", "00080008"],
  ["SOPClassUID", "00080016"],
  ["SOPInstanceUID", "00080018"],
  ["StudyDate", "00080020"],
  ["SeriesDate", "00080021"],
  ["AcquisitionDate", "00080022"],
  ["ContentDate", "00080023"],
  ["StudyTime", "00080030"],
  ["SeriesTime", "00080031"],
  ["ContentTime", "00080033"],
  ["AccessionNumber", "00080050"],
  ["InstanceAvailability", "00080056"],
  ["Modality", "00080060"],
  ["ModalitiesInStudy", "00080061"],
  ["ConversionType", "00080064"],
  ["Manufacturer", "00080070"],
  ["InstitutionName", "00080080"],
  ["ReferringPhysicianName", "00080090"],
  ["TimezoneOffsetFromUTC", "00080201"],
  ["StationName", "00081010"],
  ["StudyDescription", "00081030"],
  ["SeriesDescription", "0008103E"],
  ["InstitutionalDepartmentName", "00081040"],
  ["PerformingPhysicianName", "00081050"],
  ["RetrieveURL", "00081190"],
  ["PatientName", "00100010"],
  ["PatientID", "00100020"],
  ["IssuerOfPatientID", "00100021"],
  ["PatientBirthDate", "00100030"],
  ["PatientSex", "00100040"],
  ["PatientAge", "00101010"],
  ["BodyPartExamined", "00180015"],
  ["ViewPosition", "00185101"],
  ["StudyInstanceUID", "0020000D"],
  ["SeriesInstanceUID", "0020000E"],
  ["StudyID", "00200010"],
  ["SeriesNumber", "00200011"],
  ["AcquisitionNumber", "00200012"],
  ["InstanceNumber", "00200013"],
  ["PatientOrientation", "00200020"],
  ["Laterality", "00200060"],
  ["NumberOfStudyRelatedSeries", "00201206"],
  ["NumberOfStudyRelatedInstances", "00201208"],
  ["NumberOfSeriesRelatedInstances", "00201209"],
  ["SamplesPerPixel", "00280002"],
  ["PhotometricInterpretation", "00280004"],
  ["NumberOfFrames", "00280008"],
  ["Rows", "00280010"],
  ["Columns", "00280011"],
  ["PixelSpacing", "00280030"],
  ["BitsAllocated", "00280100"],
  ["BitsStored", "00280101"],
  ["HighBit", "00280102"],
  ["PixelRepresentation", "00280103"],
  ["WindowCenter", "00281050"],
  ["WindowWidth", "00281051"],
  ["RescaleIntercept", "00281052"],
  ["RescaleSlope", "00281053"],
  ["RequestedProcedureDescription", "00321060"],
  ["ScheduledProcedureStepStartDate", "00400002"],
  ["PerformedProcedureStepStartDate", "00400244"],
] as const;

const BY_KEYWORD: ReadonlyMap<string, string> = new Map(TABLE.map(([k, t]) => [k.toLowerCase(), t]));
const BY_TAG: ReadonlyMap<string, string> = new Map(TABLE.map(([k, t]) => [t, k]));

/** An 8-hex-digit tag (upper case) for a keyword (any case) or a tag (`00100020`, `0010,0020`, `(0010,0020)`). */
export function tagOf(keyOrTag: string): string | undefined {
  const hex = /^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$/.exec(keyOrTag.trim());
  if (hex !== null) return `${hex[1]}${hex[2]}`.toUpperCase();
  return BY_KEYWORD.get(keyOrTag.trim().toLowerCase());
}

/** The keyword of a tag, or the tag itself when the table does not know it. */
export function keywordOf(tag: string): string {
  return BY_TAG.get(tag.toUpperCase()) ?? tag.toUpperCase();
}
