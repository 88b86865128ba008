/**
 * Masks credentials in text that may reach output: error messages built from server answers (a
 * token endpoint or proxy can quote the request back), library errors, events and --json lines.
 * Applied where errors are constructed (HTTP client, auth, Storage SDK wrapper) and once more at
 * the output edge (src/cli/output.ts, the CLI's last error line), so nothing that slipped past
 * the first reaches a terminal, a log or a report. Pattern-based: it knows what credentials look
 * like, not which ones this process holds (the HTTP client also scrubs the exact values it sent).
 */

const MASK = "REDACTED";

/** JSON (or JSON-in-a-string, `\"…\"`) fields that hold a credential. */
const SECRET_FIELDS = [
  "access_token",
  "refresh_token",
  "id_token",
  "client_secret",
  "private_key",
  "private_key_id",
  "assertion",
  "client_assertion",
  "subject_token",
  "actor_token",
  "password",
  "authorization",
  "token",
].join("|");

type Rule = readonly [RegExp, string | ((...groups: string[]) => string)];

const RULES: readonly Rule[] = [
  // PEM private keys (RSA, EC, PKCS#8, encrypted), real newlines or JSON-escaped `\n`. A block cut
  // off by truncation (no END line) is masked up to the quote that closes its string, or the end.
  [
    /-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY)-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|(?=\\*["'])|$)/g,
    `[${MASK} $1]`,
  ],
  // "field": "value", also JSON inside a JSON string (`\"field\":\"value\"`); the value stops at
  // its closing (possibly escaped) quote, so the surrounding JSON stays valid.
  [
    new RegExp(`(\\\\*["'](?:${SECRET_FIELDS})\\\\*["']\\s*:\\s*\\\\*["'])(?:\\\\[^"'\\\\]|[^"'\\\\])*`, "gi"),
    `$1${MASK}`,
  ],
  // Form and query fields: access_token=…&refresh_token=…
  [
    /\b((?:access_token|refresh_token|id_token|client_secret|client_assertion|assertion|subject_token|actor_token|password|X-Goog-Signature|X-Goog-Credential)=)[^&\s"'<>\\]*/gi,
    `$1${MASK}`,
  ],
  // Authorization / Proxy-Authorization header values: a scheme and its credential, or a long token.
  [
    /\b((?:proxy-)?authorization\s*[:=]\s*)(?:(Bearer|Basic|Negotiate|Digest)\s+[^\s,;"'&\\]+|[A-Za-z0-9._~+/=-]{16,})/gi,
    (_m, head: string, scheme: string | undefined) => `${head}${scheme === undefined ? "" : `${scheme} `}${MASK}`,
  ],
  // Bearer tokens wherever they appear.
  [/\b(Bearer)\s+[A-Za-z0-9._~+/=-]{8,}/g, `$1 ${MASK}`],
  // JWTs (id tokens, signed assertions, self-signed access tokens): base64url `{"…` . `{"…` . signature.
  [/\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g, MASK],
  // Google OAuth access tokens, refresh tokens and client secrets by their shape.
  [/\bya29\.[A-Za-z0-9._-]{8,}/g, MASK],
  [/(^|[^A-Za-z0-9])1(?:\/\/|%2F%2F)[A-Za-z0-9_-]{16,}/gi, `$1${MASK}`],
  [/\bGOCSPX-[A-Za-z0-9_-]{8,}/g, MASK],
];

/** `text` with every credential-shaped substring masked (idempotent). */
export function redactSecrets(text: string): string {
  let out = text;
  for (const [pattern, replacement] of RULES) out = out.replace(pattern, replacement as never);
  return out;
}
