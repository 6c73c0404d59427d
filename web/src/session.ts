/** Browser-side persistence: the signed-in token, unsent messages, and the edge list. */
import { decodeJwtPayload, isValidUserId, type PendingMessage } from './protocol';

export interface Session {
  token: string;
  user: string;
  /** Token expiry (ms since epoch) when the JWT says. */
  expiresAt: number | null;
}

const TOKEN_KEY = 'chat.token';

function storage(): Storage | null {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}

/** Build a session from a token: its `sub` is shown as the user (the server verifies it). */
export function sessionFromToken(token: string): Session | { error: string } {
  const t = token.trim();
  const payload = decodeJwtPayload(t);
  if (!payload) return { error: 'That does not look like a JWT (header.payload.signature).' };
  const sub = payload.sub;
  if (typeof sub !== 'string' || !isValidUserId(sub)) return { error: 'The token has no valid "sub" claim.' };
  const exp = typeof payload.exp === 'number' ? payload.exp * 1000 : null;
  if (exp !== null && exp < Date.now()) return { error: 'This token has expired.' };
  return { token: t, user: sub, expiresAt: exp };
}

export function loadSession(): Session | null {
  const t = storage()?.getItem(TOKEN_KEY);
  if (!t) return null;
  const s = sessionFromToken(t);
  return 'error' in s ? null : s;
}

export function saveSession(s: Session | null) {
  const st = storage();
  if (!st) return;
  if (s) st.setItem(TOKEN_KEY, s.token);
  else st.removeItem(TOKEN_KEY);
}

const pendingKey = (user: string) => `chat.pending.${user}`;

export function loadPending(user: string): PendingMessage[] {
  try {
    const raw = storage()?.getItem(pendingKey(user));
    const v: unknown = raw ? JSON.parse(raw) : [];
    return Array.isArray(v) ? (v as PendingMessage[]) : [];
  } catch {
    return [];
  }
}

export function savePending(user: string, pending: PendingMessage[]) {
  const st = storage();
  if (!st) return;
  if (pending.length) st.setItem(pendingKey(user), JSON.stringify(pending));
  else st.removeItem(pendingKey(user));
}

/**
 * Edge origins to alternate between on reconnect: `?edges=http://a:8080,http://b:8081` (remembered),
 * else `localStorage['chat.edges']`, else the page's own origin only.
 */
export function configuredOrigins(): string[] | undefined {
  const fromQuery = new URLSearchParams(globalThis.location?.search ?? '').get('edges');
  if (fromQuery !== null) {
    if (fromQuery) storage()?.setItem('chat.edges', fromQuery);
    else storage()?.removeItem('chat.edges');
  }
  const raw = fromQuery ?? storage()?.getItem('chat.edges') ?? '';
  const list: string[] = [];
  for (const part of raw.split(',')) {
    try {
      if (part.trim()) list.push(new URL(part.trim()).origin);
    } catch {
      /* ignore a malformed entry */
    }
  }
  return list.length ? list : undefined;
}
