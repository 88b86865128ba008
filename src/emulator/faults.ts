import type { FaultConfig } from "./types.ts";

/** What to do to one request (pure decision from the config and a random source). */
export type FaultDecision =
  | { readonly kind: "none" }
  | { readonly kind: "status"; readonly status: 429 | 503; readonly retryAfterSeconds?: number }
  | { readonly kind: "reset" }
  | { readonly kind: "truncate" }
  | { readonly kind: "corrupt" };

/** A small, fast, seedable PRNG (mulberry32) so fault runs can be reproduced. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Whether faults apply to this path at all. Admin paths never get faults. */
export function faultsApply(config: FaultConfig, path: string): boolean {
  if (path.startsWith("/_emulator/")) return false;
  return config.pathFilter === undefined || config.pathFilter === "" || path.includes(config.pathFilter);
}

/**
 * Decides the fault for one request. Status faults apply to any request; body faults (reset,
 * truncate, corrupt) only to media bodies, where `hasBody` is true.
 */
export function decideFault(config: FaultConfig, random: () => number, hasBody: boolean): FaultDecision {
  const r = random();
  let edge = config.rate429;
  if (r < edge) return withRetryAfter(429, config);
  edge += config.rate503;
  if (r < edge) return withRetryAfter(503, config);
  if (!hasBody) return { kind: "none" };
  edge += config.resetRate;
  if (r < edge) return { kind: "reset" };
  edge += config.truncateRate;
  if (r < edge) return { kind: "truncate" };
  edge += config.corruptRate;
  if (r < edge) return { kind: "corrupt" };
  return { kind: "none" };
}

function withRetryAfter(status: 429 | 503, config: FaultConfig): FaultDecision {
  return config.retryAfterSeconds === undefined
    ? { kind: "status", status }
    : { kind: "status", status, retryAfterSeconds: config.retryAfterSeconds };
}

/** Validates and merges a partial config from the admin endpoint or flags; returns the errors. */
export function mergeFaults(
  current: FaultConfig,
  patch: Record<string, unknown>,
): { config: FaultConfig; errors: string[] } {
  const errors: string[] = [];
  const next: Record<string, unknown> = { ...current };
  const rates = ["rate429", "rate503", "resetRate", "truncateRate", "corruptRate", "exportFailureRate"];
  for (const [key, value] of Object.entries(patch)) {
    if (rates.includes(key)) {
      if (typeof value !== "number" || !(value >= 0 && value <= 1)) errors.push(`${key} must be a number from 0 to 1`);
      else next[key] = value;
    } else if (key === "latencyMs" || key === "retryAfterSeconds" || key === "seed") {
      if (value === null && key === "retryAfterSeconds") delete next[key];
      else if (typeof value !== "number" || !(value >= 0) || !Number.isFinite(value))
        errors.push(`${key} must be a non-negative number`);
      else next[key] = value;
    } else if (key === "pathFilter") {
      if (typeof value !== "string") errors.push("pathFilter must be a string");
      else next[key] = value;
    } else errors.push(`unknown fault setting "${key}"`);
  }
  return { config: next as unknown as FaultConfig, errors };
}
