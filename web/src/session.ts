/** Browser-side persistence: the signed-in token, unsent messages, and the edge list. */
import { decodeJwtPayload, isValidUserId, MODERATOR_ROLE, rolesOf, type PendingMessage } from './protocol';

export interface Session {
  token: string;
  user: string;
  /** Token expiry (ms since epoch) when the JWT says. */
  expiresAt: number | null;
  /** The token's `roles` claim: shows the moderator panel; the server enforces it. */
  roles: string[];
}

export function isModerator(s: Session): boolean {
  return s.roles.includes(MODERATOR_ROLE);
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
  return { token: t, user: sub, expiresAt: exp, roles: rolesOf(payload) };
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

/** The http(s) origin of `text`, or null. */
function toOrigin(text: string): string | null {
  try {
    const u = new URL(text.trim());
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.origin : null;
  } catch {
    return null;
  }
}

/**
 * The origins the client may send its token to: the page's own, and those the server lists in
 * `<meta name="chat-edges" content="http://a:8080,http://b:8081">` (its `CHAT_WEB_EDGES`).
 */
export function allowedOrigins(): Set<string> {
  const allowed = new Set<string>();
  const own = globalThis.location?.origin;
  if (own && own !== 'null') allowed.add(own);
  const meta = globalThis.document?.querySelector?.('meta[name="chat-edges"]')?.getAttribute('content') ?? '';
  for (const part of meta.split(',')) {
    const origin = toOrigin(part);
    if (origin) allowed.add(origin);
  }
  return allowed;
}

/**
 * Edge origins to alternate between on reconnect: `?edges=http://a:8080,http://b:8081` (remembered),
 * else `localStorage['chat.edges']`, else the page's own origin only. Only allowed origins count
 * (a link to `/?edges=https://evil.example` must not hand the token to that host), and only they
 * are remembered; a remembered list is checked again on every load.
 */
export function configuredOrigins(allowed: Set<string> = allowedOrigins()): string[] | undefined {
  const pick = (raw: string) =>
    raw
      .split(',')
      .map(toOrigin)
      .filter((o): o is string => o !== null && allowed.has(o));
  const fromQuery = new URLSearchParams(globalThis.location?.search ?? '').get('edges');
  let list: string[];
  if (fromQuery !== null) {
    list = pick(fromQuery);
    if (list.length) storage()?.setItem('chat.edges', list.join(','));
    else storage()?.removeItem('chat.edges');
  } else {
    list = pick(storage()?.getItem('chat.edges') ?? '');
  }
  return list.length ? list : undefined;
}
