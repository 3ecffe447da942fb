// The URL hash: `#/boards/<slug>` is the board on screen.

export function boardFromHash(hash: string): string | null {
  const m = /^#\/boards\/([^/?#]+)\/?$/.exec(hash);
  if (!m?.[1]) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return null;
  }
}

export function hashForBoard(slug: string): string {
  return `#/boards/${encodeURIComponent(slug)}`;
}

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** A command's idempotency key: 22 characters of A-Z a-z 0-9 - _. */
export function commandId(random: (n: number) => Uint8Array = randomBytes): string {
  return Array.from(random(22), (b) => ID_ALPHABET[b % 64]).join('');
}

function randomBytes(n: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(n));
}
