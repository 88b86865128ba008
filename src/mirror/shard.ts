/**
 * Stable hash partition of object names (`--shard K/N`): FNV-1a over the UTF-8 bytes, so every
 * machine computes the same shard for a name with no coordination, and every name lands in
 * exactly one of the N shards.
 */
export function shardOf(name: string, count: number): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(name, "utf8")) h = Math.imul(h ^ byte, 0x01000193);
  return (h >>> 0) % count;
}

/** Parses `K/N` (0 ≤ K < N). */
export function parseShard(text: string): { index: number; count: number } | undefined {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (m === null) return undefined;
  const index = Number(m[1]);
  const count = Number(m[2]);
  return count >= 1 && index < count ? { index, count } : undefined;
}
