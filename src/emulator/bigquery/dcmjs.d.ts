/** The small part of dcmjs (no bundled types) that the BigQuery export uses. */
declare module "dcmjs" {
  interface DicomElement {
    vr: string;
    Value?: unknown[];
    _rawValue?: unknown;
  }
  const dcmjs: {
    data: {
      DicomMessage: {
        readFile(
          buffer: ArrayBuffer,
          options?: { untilTag?: string; includeUntilTagValue?: boolean; ignoreErrors?: boolean },
        ): { meta: Record<string, DicomElement>; dict: Record<string, DicomElement> };
      };
      DicomMetaDictionary: {
        dictionary: Record<string, { tag: string; vr: string; vm: string; name: string } | undefined>;
      };
    };
  };
  export default dcmjs;
}
