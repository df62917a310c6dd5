const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;
const WHITESPACE = /\s/;

/**
 * Reads a bearer token (RFC 6750 §2.1); null when the header is missing or of another scheme.
 * The scheme is case-insensitive, separated from the token by spaces or tabs, and the token
 * is one run of non-whitespace, optionally followed by spaces or tabs.
 *
 * The usual `Bearer <token>` is read with `startsWith` and a whitespace test, everything else
 * with the regular expression: every authenticated request reads this header, and the match
 * array and capture `exec` allocates were the largest allocation of the credential step.
 */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  if (header.startsWith("Bearer ") && header.length > 7) {
    const token = header.slice(7);
    if (!WHITESPACE.test(token)) return token;
  }
  const match = BEARER.exec(header);
  return match ? match[1]! : null;
}
