/**
 * Partial responses (`fields=`): the mask grammar the Google APIs accept, e.g.
 * `nextPageToken,items(name,size,crc32c)` or gcloud's `prefixes,items/name,items/size`.
 * A parsed mask is a tree: `true` keeps the whole field, a nested mask selects within it.
 */
export type FieldsMask = Map<string, FieldsMask | true>;

export function parseFieldsMask(text: string): FieldsMask {
  let i = 0;
  const parseList = (): FieldsMask => {
    const mask: FieldsMask = new Map();
    for (;;) {
      parsePath(mask);
      if (text[i] === ",") {
        i++;
        continue;
      }
      return mask;
    }
  };
  const parseName = (): string => {
    const start = i;
    while (i < text.length && !",/()".includes(text[i]!)) i++;
    const name = text.slice(start, i).trim();
    if (name === "") throw new Error(`invalid fields mask "${text}" at ${start}`);
    return name;
  };
  const parsePath = (into: FieldsMask): void => {
    const name = parseName();
    if (text[i] === "/") {
      i++;
      const sub = existingSub(into, name);
      parsePath(sub);
    } else if (text[i] === "(") {
      i++;
      const inner = parseList();
      if (text[i] !== ")") throw new Error(`invalid fields mask "${text}": missing ')'`);
      i++;
      const sub = existingSub(into, name);
      for (const [k, v] of inner) mergeInto(sub, k, v);
    } else {
      into.set(name, true);
    }
  };
  const mask = parseList();
  if (i !== text.length) throw new Error(`invalid fields mask "${text}" at ${i}`);
  return mask;
}

function existingSub(into: FieldsMask, name: string): FieldsMask {
  const cur = into.get(name);
  if (cur === true) return new Map(); // already whole: a sub-selection cannot narrow it
  if (cur !== undefined) return cur;
  const sub: FieldsMask = new Map();
  into.set(name, sub);
  return sub;
}

function mergeInto(into: FieldsMask, key: string, value: FieldsMask | true): void {
  const cur = into.get(key);
  if (cur === true || value === true || cur === undefined) {
    into.set(key, cur === true || value === true ? true : value);
    return;
  }
  for (const [k, v] of value) mergeInto(cur, k, v);
}

/** Applies a mask to a JSON value (arrays are masked element by element). */
export function applyFieldsMask(value: unknown, mask: FieldsMask): unknown {
  if (Array.isArray(value)) return value.map((v) => applyFieldsMask(v, mask));
  if (typeof value !== "object" || value === null) return value;
  if (mask.get("*") === true) return value;
  const out: Record<string, unknown> = {};
  for (const [key, sub] of mask) {
    const v = (value as Record<string, unknown>)[key];
    if (v === undefined) continue;
    out[key] = sub === true ? v : applyFieldsMask(v, sub);
  }
  return out;
}
