import { IntegrityError } from "../core/errors.ts";

/**
 * Reads a response body of a known size (`whole.byteLength`) in flowing mode (no stream
 * re-buffering, no promise per chunk) straight into `whole` (a stager's lease, which a stage
 * thread reads in place): the mirror's small objects and the pull's instances. A
 * body longer than that is cut off the moment it overruns (an endless body never grows memory
 * past the listed size); a shorter one is a truncation. The digest is checked where the bytes are
 * written (`stageBufferSync`).
 */
export async function receiveInto(
  body: AsyncIterable<Uint8Array>,
  whole: Uint8Array,
  name: string,
  /** Where the size came from, for messages: "listed" (an object listing), "Content-Length's". */
  sizeFrom = "listed",
): Promise<void> {
  const size = whole.byteLength;
  let received = 0;
  const tooLong = () => new IntegrityError(`${name}: the body is longer than the ${sizeFrom} ${size} bytes; cut off`);
  const take = (chunk: Uint8Array): boolean => {
    if (received + chunk.byteLength > size) return false;
    whole.set(chunk, received);
    received += chunk.byteLength;
    return true;
  };
  const emitter = body as unknown as {
    on?: (ev: string, fn: (x: never) => void) => void;
    once: (ev: string, fn: (x: never) => void) => void;
  };
  if (typeof emitter.on === "function") {
    await new Promise<void>((resolve, reject) => {
      emitter.on!("data", (chunk: Uint8Array) => {
        if (take(chunk)) return;
        (body as { destroy?: (e?: Error) => void }).destroy?.();
        reject(tooLong());
      });
      emitter.once("end", () => resolve());
      emitter.once("error", (err: Error) => reject(err));
    });
  } else {
    for await (const chunk of body) if (!take(chunk)) throw tooLong();
  }
  if (received !== size) throw new IntegrityError(`${name}: got ${received} bytes, expected ${size}`);
}
