/**
 * Remote text (server error messages, operation errors, object names, FHIR fields) is untrusted:
 * an ESC sequence in it could clear the screen, set the window title or forge a line. The output
 * layer passes every human line and every NDJSON line through these helpers, so no module has to
 * remember to.
 */

/* eslint-disable no-control-regex */
/** C0 controls except tab and newline, DEL, C1 controls (U+009B is CSI to many terminals), bidi overrides. */
const UNSAFE_IN_LINES = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
/** The same, newline and tab included: for text that must stay on one line (a status, a spinner). */
const UNSAFE_IN_STATUS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
/** What JSON.stringify leaves raw but a terminal still interprets (it escapes C0 itself). */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
/* eslint-enable no-control-regex */

const escapeOne = (c: string): string => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;

/**
 * `text` with every terminal control character written as a visible `\uXXXX` escape (as
 * JSON.stringify writes them), keeping newlines and tabs; `oneLine` escapes those too.
 */
export function escapeControls(text: string, o: { readonly oneLine?: boolean } = {}): string {
  return text.replace(o.oneLine === true ? UNSAFE_IN_STATUS : UNSAFE_IN_LINES, escapeOne);
}

/** A JSON text (one NDJSON line) with the characters JSON leaves raw but terminals act on escaped; still valid JSON. */
export function escapeJsonControls(json: string): string {
  return json.replace(UNSAFE_IN_JSON, escapeOne);
}
