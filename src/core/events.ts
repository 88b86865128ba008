/**
 * Progress as events (DESIGN §7): modules never print; they call an injected sink with a typed
 * event (a union keyed on `kind`, defined next to the module that emits it). The CLI chooses
 * how to render them: spinners on a TTY, plain lines otherwise, NDJSON with `--json`.
 */
export type EventSink<E extends { readonly kind: string }> = (event: E) => void;

/** A sink that drops everything; the default for library callers. */
export const nullSink = (): void => {};

/** Collects events into an array: handy in tests. */
export function collectingSink<E extends { readonly kind: string }>(): EventSink<E> & { readonly events: E[] } {
  const events: E[] = [];
  const sink = (event: E): void => {
    events.push(event);
  };
  return Object.assign(sink, { events });
}
