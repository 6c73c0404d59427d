/** REST calls (same origin as the page). Every function takes the token explicitly. */
import type {
  Conversation,
  ConversationsResponse,
  DevTokenResponse,
  Message,
  MessagesResponse,
  ReceiptsResponse,
} from './protocol';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** With a 429: how long the server asks to wait. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

export interface Api {
  conversations(): Promise<Conversation[]>;
  /** A one-time ticket to open the WebSocket with, instead of the token in its URL. */
  wsTicket(): Promise<string>;
  messages(conversationId: string, q: { before?: number; after?: number; limit?: number }): Promise<Message[]>;
  receipts(conversationId: string): Promise<ReceiptsResponse['receipts']>;
}

/** A 429 is waited out (as long as the server says, at most this long) and retried this often. */
const RATE_LIMIT_RETRIES = 3;
const RATE_LIMIT_MAX_WAIT_MS = 10_000;

export async function request<T>(base: string, path: string, init: RequestInit): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await requestOnce<T>(base, path, init);
    } catch (e) {
      // The server limits REST calls per user and per IP: a burst (a gap fill in many
      // conversations at once) waits its turn instead of failing.
      if (!(e instanceof ApiError) || e.status !== 429 || attempt >= RATE_LIMIT_RETRIES) throw e;
      await new Promise((resolve) => setTimeout(resolve, Math.min(RATE_LIMIT_MAX_WAIT_MS, e.retryAfterMs ?? 1000)));
    }
  }
}

async function requestOnce<T>(base: string, path: string, init: RequestInit): Promise<T> {
  let res: Response;
  try {
    res = await fetch(base + path, init);
  } catch (e) {
    throw new ApiError(0, 'network', e instanceof Error ? e.message : 'network error');
  }
  let body: unknown = null;
  const text = await res.text();
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!res.ok) {
    const err = body as { error?: unknown; retry_after_ms?: unknown } | null;
    const code = err?.error;
    const retryAfter = typeof err?.retry_after_ms === 'number' ? err.retry_after_ms : undefined;
    throw new ApiError(res.status, typeof code === 'string' ? code : `http_${res.status}`, `HTTP ${res.status}`, retryAfter);
  }
  return body as T;
}

/** `GET /v1/conversations` is paginated: this many per page, at most this many pages. */
export const CONVERSATIONS_PAGE = 500;
const MAX_CONVERSATION_PAGES = 100;

export function createApi(token: string, base = ''): Api {
  const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
  return {
    async conversations() {
      const all: Conversation[] = [];
      let after: string | null = null;
      for (let page = 0; page < MAX_CONVERSATION_PAGES; page++) {
        const p = new URLSearchParams({ limit: String(CONVERSATIONS_PAGE) });
        if (after) p.set('after', after);
        const r: ConversationsResponse = await request<ConversationsResponse>(base, `/v1/conversations?${p}`, { headers });
        if (Array.isArray(r?.conversations)) all.push(...r.conversations);
        after = typeof r?.next === 'string' && r.next ? r.next : null;
        if (!after) break;
      }
      return all;
    },
    async wsTicket() {
      const r = await request<{ ticket?: unknown }>(base, '/v1/ws-ticket', { method: 'POST', headers });
      if (typeof r?.ticket !== 'string' || !r.ticket) throw new ApiError(0, 'bad_response', 'no ticket in the answer');
      return r.ticket;
    },
    async messages(conversationId, q) {
      const p = new URLSearchParams();
      if (q.before !== undefined) p.set('before', String(q.before));
      if (q.after !== undefined) p.set('after', String(q.after));
      if (q.limit !== undefined) p.set('limit', String(q.limit));
      const qs = p.toString();
      const r = await request<MessagesResponse>(
        base,
        `/v1/conversations/${encodeURIComponent(conversationId)}/messages${qs ? `?${qs}` : ''}`,
        { headers },
      );
      return Array.isArray(r?.messages) ? r.messages : [];
    },
    async receipts(conversationId) {
      const r = await request<ReceiptsResponse>(
        base,
        `/v1/conversations/${encodeURIComponent(conversationId)}/receipts`,
        { headers },
      );
      return r?.receipts && typeof r.receipts === 'object' ? r.receipts : {};
    },
  };
}

/** Dev-mode sign-in: `POST /v1/dev/token`; `roles: ['moderator']` asks for a moderator's token. */
export async function devToken(user: string, base = '', roles: string[] = []): Promise<DevTokenResponse> {
  return request<DevTokenResponse>(base, '/v1/dev/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify(roles.length ? { user, roles } : { user }),
  });
}
