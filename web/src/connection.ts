/**
 * The WebSocket session: connects to `/v1/ws`, reconnects with backoff, syncs, resends pending
 * messages, and turns server frames into store actions. The only module that talks to the socket.
 */
import { ApiError, type Api } from './api';
import {
  blockedText,
  CloseCode,
  decodeFrame,
  encodeFrame,
  frames,
  highestSeq,
  historyBefore,
  MAX_PRESENCE_USERS,
  myReadSeq,
  presenceEntries,
  presenceTargets,
  syncCursors,
  TYPING_REFRESH_MS,
  type Attachment,
  type ClientFrame,
  type Conversation,
  type ErrorFrame,
  type OkFrame,
  type ServerFrame,
  type Store,
} from './protocol';

export type ConnectionStatus =
  /** First connection attempt in progress. */
  | 'connecting'
  | 'open'
  /** Was open (or failed) and is waiting for / attempting a reconnect. */
  | 'reconnecting'
  /** The token was rejected or expired: the user must sign in again. */
  | 'unauthorized'
  | 'stopped';

export interface ConnectionOptions {
  token: string;
  store: Store;
  api: Api;
  /** Edge origins to alternate between on reconnect (e.g. `http://127.0.0.1:8081`); default: the page's. */
  origins?: string[];
  /** Called once when the token is rejected (401) or expires (close 4003). */
  onAuthFailure?: (reason: 'unauthorized' | 'expired') => void;
}

/** Timings (ms). */
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_CAP_MS = 10_000;
export const PING_INTERVAL_MS = 20_000;
export const PONG_TIMEOUT_MS = 10_000;
export const ACK_TIMEOUT_MS = 10_000;
export const MAX_SEND_ATTEMPTS = 4;
export const RECEIPT_THROTTLE_MS = 400;
export const TYPING_IDLE_MS = 5_000;
export const REQUEST_TIMEOUT_MS = 15_000;
export const HISTORY_PAGE = 50;
/** After a reconnect, this many of a conversation's newest loaded messages are checked for moderation missed offline. */
export const MODERATION_CHECK_PAGE = 100;
const GAP_PAGE = 200;
const LIST_RETRY_MS = 5_000;
const GAP_MAX_PAGES = 10;

/** Exponential backoff with jitter: half fixed, half random, capped. */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 10));
  return Math.round(base / 2 + random() * (base / 2));
}

/** What the WebSocket URL carries: a one-time ticket, or (when tickets are unavailable) the token. */
export type Credential = { ticket: string } | { token: string };

/** `ws(s)://host/v1/ws?ticket=…` (or `?access_token=…`) for an http(s) origin. */
export function wsUrl(origin: string, credential: Credential): string {
  const u = new URL('/v1/ws', origin);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  if ('ticket' in credential) u.searchParams.set('ticket', credential.ticket);
  else u.searchParams.set('access_token', credential.token);
  return u.toString();
}

export function newClientMsgId(): string {
  const c = globalThis.crypto as Crypto | undefined;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c) c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

interface PendingRequest {
  resolve(frame: OkFrame): void;
  reject(err: ErrorFrame): void;
  timer: ReturnType<typeof setTimeout>;
}

interface SendTracking {
  attempts: number;
  ackTimer: ReturnType<typeof setTimeout> | null;
  retryTimer: ReturnType<typeof setTimeout> | null;
}

export class Connection {
  /** Connection state for the banner. */
  status: ConnectionStatus = 'connecting';
  /** Reconnect attempts since the last completed sync (drives the backoff). */
  private attempt = 0;
  /** Index into origins, advanced on every reconnect. */
  private originIndex = 0;
  private ws: WebSocket | null = null;
  private wsOpened = false;
  private everOpened = false;
  /**
   * Conversations whose loaded messages may have been hidden or restored while the socket was
   * down (those frames are not replayed by sync): checked against history when next shown.
   */
  private readonly moderationStale = new Set<string>();
  /** Counts live message.redacted/restored frames: a history answer older than one is not applied. */
  private moderationFrames = 0;
  private stopped = false;
  private bootstrapped = false;
  /** Set when a socket was lost: the next sync.done also refreshes the conversation list. */
  private needsRefresh = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private pongTimer: ReturnType<typeof setTimeout> | null = null;
  private nextId = 1;
  private readonly requests = new Map<string, PendingRequest>();
  /** Frame id → client_msg_id for in-flight `message.send`. */
  private readonly sendIds = new Map<string, string>();
  private readonly sends = new Map<string, SendTracking>();
  private syncId: string | null = null;
  private readonly subscribed = new Set<string>();
  /** Last `message.delivered` / `receipt.read` seq sent per conversation. */
  private readonly deliveredSent = new Map<string, number>();
  private readonly readSent = new Map<string, number>();
  private receiptTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly gapFilling = new Set<string>();
  private openConversation: string | null = null;
  private visible = true;
  private readonly typingStartedAt = new Map<string, number>();
  private readonly typingIdle = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly listeners = new Set<() => void>();
  private unsubscribeStore: (() => void) | null = null;
  private readonly origins: string[];

  /** The bearer token, for the REST calls of media uploads and downloads (docs/media.md). */
  get token(): string {
    return this.opts.token;
  }

  constructor(private readonly opts: ConnectionOptions) {
    this.origins = opts.origins && opts.origins.length ? opts.origins : [globalThis.location?.origin ?? ''];
  }

  // ------------------------------------------------------------ lifecycle

  start(): void {
    this.stopped = false;
    this.unsubscribeStore = this.opts.store.subscribe(() => this.ensurePresenceSubscriptions());
    globalThis.addEventListener?.('online', this.onBrowserOnline);
    globalThis.addEventListener?.('offline', this.onBrowserOffline);
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.setStatus('stopped');
    globalThis.removeEventListener?.('online', this.onBrowserOnline);
    globalThis.removeEventListener?.('offline', this.onBrowserOffline);
    this.unsubscribeStore?.();
    this.unsubscribeStore = null;
    this.teardownSocket(CloseCode.Normal);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.receiptTimer) clearTimeout(this.receiptTimer);
    for (const t of this.typingIdle.values()) clearTimeout(t);
    for (const s of this.sends.values()) this.clearSendTimers(s);
    this.sends.clear();
  }

  onStatus(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The origin the current (or next) socket uses. */
  get origin(): string {
    return this.origins[this.originIndex % this.origins.length];
  }

  private setStatus(s: ConnectionStatus) {
    if (this.status === s) return;
    this.status = s;
    for (const l of [...this.listeners]) l();
  }

  private readonly onBrowserOnline = () => {
    if (this.stopped || this.ws) return;
    this.attempt = 0;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    void this.connect();
  };

  private readonly onBrowserOffline = () => {
    if (this.ws) this.handleDrop();
  };

  private async connect(): Promise<void> {
    if (this.stopped) return;
    this.reconnectTimer = null;
    this.setStatus(this.everOpened || this.attempt > 0 ? 'reconnecting' : 'connecting');
    if (!this.bootstrapped) {
      // Learn the conversations (and so the cursors) before the first sync.
      try {
        await this.reloadConversations();
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) return this.authFailed('unauthorized');
        // The read side is unavailable: connect anyway (sync works without it) and retry the list later.
        this.needsRefresh = true;
      }
      if (this.stopped) return;
    }
    // A one-time ticket, so that the long-lived token never appears in a URL (proxies log URLs).
    let credential: Credential;
    try {
      credential = { ticket: await this.opts.api.wsTicket() };
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return this.authFailed('unauthorized');
      // 503: the server cannot issue tickets now (its Redis is down); 404: a server without them.
      // Connecting with the token beats not connecting; the servers redact it from their logs.
      if (e instanceof ApiError && (e.status === 503 || e.status === 404)) credential = { token: this.opts.token };
      else return this.scheduleReconnect();
    }
    if (this.stopped) return;
    let ws: WebSocket;
    try {
      ws = new WebSocket(wsUrl(this.origin, credential));
    } catch {
      return this.scheduleReconnect();
    }
    this.ws = ws;
    this.wsOpened = false;
    ws.onopen = () => this.onOpen(ws);
    ws.onmessage = (ev) => {
      if (this.ws !== ws || typeof ev.data !== 'string') return;
      const f = decodeFrame(ev.data);
      if (f) this.onFrame(f);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.onClose(ev.code);
    };
    ws.onerror = () => {
      /* a close event follows */
    };
  }

  private onOpen(ws: WebSocket) {
    if (this.ws !== ws) return;
    if (this.everOpened) for (const id of Object.keys(this.opts.store.getState().messages)) this.moderationStale.add(id);
    this.wsOpened = true;
    this.everOpened = true;
    this.setStatus('open');
    this.subscribed.clear();
    this.deliveredSent.clear();
    this.readSent.clear();
    // 1. Catch up on everything after our cursors.
    this.syncId = this.allocId('sync');
    const cursors = syncCursors(this.opts.store.getState());
    // No known conversation yet: let the server use my delivered cursor.
    this.send(frames.sync(Object.keys(cursors).length ? cursors : undefined, this.syncId));
    // 2. Presence of everyone we talk to.
    this.ensurePresenceSubscriptions();
    // 3. Re-send unacknowledged messages with their original client_msg_id (idempotent).
    for (const p of Object.values(this.opts.store.getState().pending)) {
      if (p.status === 'pending') this.transmit(p.client_msg_id, true);
    }
    // 4. Application-level keepalive.
    this.pingTimer = setInterval(() => this.ping(), PING_INTERVAL_MS);
  }

  private onClose(code: number) {
    const opened = this.wsOpened;
    this.teardownSocket();
    this.needsRefresh = true;
    if (this.stopped) return;
    if (code === CloseCode.TokenExpired) return this.authFailed('expired');
    if (!opened) {
      // The upgrade failed: maybe the token is refused (401), which a browser cannot see. Ask REST.
      void this.opts.api.conversations().then(
        () => this.scheduleReconnect(),
        (e) => (e instanceof ApiError && e.status === 401 ? this.authFailed('unauthorized') : this.scheduleReconnect()),
      );
      return;
    }
    this.scheduleReconnect();
  }

  /** The socket is dead (no pong, browser offline): drop it now and reconnect. */
  private handleDrop() {
    this.teardownSocket(CloseCode.Normal);
    this.needsRefresh = true;
    if (!this.stopped) this.scheduleReconnect();
  }

  private teardownSocket(closeCode?: number) {
    const ws = this.ws;
    this.ws = null;
    this.wsOpened = false;
    this.syncId = null;
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.pongTimer) clearTimeout(this.pongTimer);
    this.pingTimer = null;
    this.pongTimer = null;
    for (const [, r] of this.requests) {
      clearTimeout(r.timer);
      r.reject({ type: 'error', code: 'unavailable', message: 'connection lost' });
    }
    this.requests.clear();
    this.sendIds.clear();
    for (const s of this.sends.values()) this.clearSendTimers(s);
    this.typingStartedAt.clear();
    if (ws && closeCode !== undefined) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(closeCode);
      } catch {
        /* already closed */
      }
    }
  }

  private scheduleReconnect() {
    if (this.stopped || this.reconnectTimer) return;
    this.setStatus('reconnecting');
    const delay = backoffDelay(this.attempt);
    this.attempt++;
    this.originIndex = (this.originIndex + 1) % this.origins.length;
    this.reconnectTimer = setTimeout(() => void this.connect(), delay);
  }

  private authFailed(reason: 'unauthorized' | 'expired') {
    this.stopped = true;
    this.teardownSocket(CloseCode.Normal);
    this.setStatus('unauthorized');
    this.opts.onAuthFailure?.(reason);
  }

  // ------------------------------------------------------------ frames

  private allocId(prefix: string): string {
    return `${prefix}-${this.nextId++}`;
  }

  private send(frame: ClientFrame): boolean {
    if (!this.ws || !this.wsOpened) return false;
    try {
      this.ws.send(encodeFrame(frame));
      return true;
    } catch {
      return false;
    }
  }

  /** Send a frame expecting `ok`; rejects with the `error` frame (or `unavailable` when offline). */
  request(build: (id: string) => ClientFrame): Promise<OkFrame> {
    return new Promise((resolve, reject) => {
      const id = this.allocId('r');
      if (!this.send(build(id))) {
        reject({ type: 'error', id, code: 'unavailable', message: 'Not connected' } satisfies ErrorFrame);
        return;
      }
      const timer = setTimeout(() => {
        this.requests.delete(id);
        reject({ type: 'error', id, code: 'unavailable', message: 'No answer from the server' } satisfies ErrorFrame);
      }, REQUEST_TIMEOUT_MS);
      this.requests.set(id, { resolve, reject, timer });
    });
  }

  private ping() {
    const id = this.allocId('ping');
    if (!this.send(frames.ping(id))) return;
    if (this.pongTimer) return;
    this.pongTimer = setTimeout(() => {
      this.pongTimer = null;
      this.handleDrop();
    }, PONG_TIMEOUT_MS);
  }

  private onFrame(f: ServerFrame) {
    const store = this.opts.store;
    switch (f.type) {
      case 'message': {
        const cursorBefore = store.getState().cursors[f.conversation_id];
        store.dispatch({ type: 'messages.received', messages: [f] });
        if (this.syncId === null && cursorBefore !== undefined && f.seq > cursorBefore + 1) {
          void this.fillGap(f.conversation_id);
        }
        if (!store.getState().conversations[f.conversation_id]) this.learnConversation(f.conversation_id);
        this.scheduleReceipts();
        break;
      }
      case 'message.redacted':
        this.moderationFrames++;
        store.dispatch({ type: 'message.redacted', conversation_id: f.conversation_id, seq: f.seq, reason: f.reason });
        break;
      case 'message.restored':
        this.moderationFrames++;
        store.dispatch({ type: 'message.restored', message: { ...f.message, conversation_id: f.conversation_id, seq: f.seq } });
        break;
      case 'message.ack': {
        const cmid = f.client_msg_id;
        if (f.id !== undefined) this.sendIds.delete(String(f.id));
        const t = this.sends.get(cmid);
        if (t) this.clearSendTimers(t);
        this.sends.delete(cmid);
        const st = store.getState();
        // Sending implies having read what came before: keep my own message from counting as unread.
        const readBefore = myReadSeq(st, f.conversation_id);
        store.dispatch({ type: 'message.acked', conversation_id: f.conversation_id, client_msg_id: cmid, seq: f.seq, ts: f.ts });
        if (readBefore >= f.seq - 1) this.sendRead(f.conversation_id, f.seq);
        this.scheduleReceipts();
        break;
      }
      case 'receipt':
        store.dispatch({ type: 'receipt', conversation_id: f.conversation_id, user: f.user, kind: f.kind, seq: f.seq });
        break;
      case 'typing':
        store.dispatch({ type: 'typing', conversation_id: f.conversation_id, user: f.user, state: f.state, now: store.now() });
        break;
      case 'presence':
        store.dispatch({ type: 'presence', entries: [{ user: f.user, status: f.status, last_seen: f.last_seen }] });
        break;
      case 'conversation': {
        const before = store.getState().cursors[f.conversation?.id];
        store.dispatch({ type: 'conversation.upsert', conversation: f.conversation, event: f.event, now: store.now() });
        const conv = store.getState().conversations[f.conversation?.id];
        if (conv && (before === undefined || conv.last_seq > (store.getState().cursors[conv.id] ?? 0))) {
          void this.fillGap(conv.id);
        }
        break;
      }
      case 'ok': {
        const id = f.id === undefined ? '' : String(f.id);
        if (f.presence) store.dispatch({ type: 'presence', entries: presenceEntries(f.presence) });
        if (f.conversation) {
          store.dispatch({ type: 'conversation.upsert', conversation: f.conversation, now: store.now() });
        }
        const r = this.requests.get(id);
        if (r) {
          clearTimeout(r.timer);
          this.requests.delete(id);
          r.resolve(f);
        }
        break;
      }
      case 'error':
        this.onError(f);
        break;
      case 'sync.done':
        this.onSyncDone(f.conversations ?? {});
        break;
      case 'pong':
        if (this.pongTimer) clearTimeout(this.pongTimer);
        this.pongTimer = null;
        break;
      case 'ping':
        this.send(frames.pong(f.id));
        break;
    }
  }

  private onError(f: ErrorFrame) {
    const id = f.id === undefined ? '' : String(f.id);
    const r = this.requests.get(id);
    if (r) {
      clearTimeout(r.timer);
      this.requests.delete(id);
      r.reject(f);
      return;
    }
    const cmid = this.sendIds.get(id);
    if (cmid !== undefined) {
      this.sendIds.delete(id);
      this.onSendError(cmid, f);
      return;
    }
    if (id === this.syncId) {
      // A failed sync: retry shortly on a fresh socket.
      this.handleDrop();
    }
  }

  private onSyncDone(lastSeqs: Record<string, number>) {
    const store = this.opts.store;
    this.syncId = null;
    this.attempt = 0;
    store.dispatch({ type: 'sync.done', conversations: lastSeqs });
    const known = store.getState().conversations;
    const unknown = Object.keys(lastSeqs).some((id) => !known[id]);
    const missing = Object.keys(known).filter((id) => !(id in lastSeqs));
    // Not in sync.done: maybe I was removed while offline. Drop it only if REST agrees (404).
    for (const id of missing) {
      this.opts.api.receipts(id).then(
        () => undefined,
        (e) => {
          if (e instanceof ApiError && (e.status === 404 || e.status === 403)) {
            store.dispatch({ type: 'conversation.remove', conversation_id: id });
          }
        },
      );
    }
    const after = () => {
      const st = store.getState();
      for (const c of Object.values(st.conversations)) {
        if (c.last_seq > (st.cursors[c.id] ?? 0)) void this.fillGap(c.id);
      }
      this.scheduleReceipts();
    };
    // Membership may have changed while offline: refresh the list when it disagrees with sync.done.
    if (unknown || this.needsRefresh) {
      this.needsRefresh = false;
      void this.refreshConversations().finally(after);
    } else after();
    if (this.openConversation) {
      void this.refreshReceipts(this.openConversation);
      void this.recheckModeration(this.openConversation);
    }
  }

  // ------------------------------------------------------------ REST catch-up

  private async reloadConversations() {
    const list = await this.opts.api.conversations();
    this.opts.store.dispatch({ type: 'conversations.loaded', conversations: list, now: this.opts.store.now() });
    this.bootstrapped = true;
  }

  private refreshing: Promise<void> | null = null;
  private refreshConversations(): Promise<void> {
    if (!this.refreshing) {
      this.refreshing = this.reloadConversations()
        .catch(() => {
          this.needsRefresh = true;
          if (!this.stopped) setTimeout(() => this.wsOpened && void this.refreshConversations(), LIST_RETRY_MS);
        })
        .finally(() => {
          this.refreshing = null;
        });
    }
    return this.refreshing;
  }

  /** A message for a conversation I do not know yet: fetch the list (the read side may lag: retry once). */
  private learnConversation(id: string) {
    const known = () => !!this.opts.store.getState().conversations[id];
    void this.refreshConversations().then(() => {
      if (!known() && !this.stopped) setTimeout(() => !known() && void this.refreshConversations(), LIST_RETRY_MS / 2);
    });
  }

  /** Fetch messages after the cursor until it reaches the conversation's last seq. */
  async fillGap(conversationId: string): Promise<void> {
    if (this.gapFilling.has(conversationId)) return;
    this.gapFilling.add(conversationId);
    const store = this.opts.store;
    try {
      for (let page = 0; page < GAP_MAX_PAGES; page++) {
        const st = store.getState();
        const conv = st.conversations[conversationId];
        const cursor = st.cursors[conversationId] ?? 0;
        if (!conv || conv.last_seq <= cursor) break;
        const msgs = await this.opts.api.messages(conversationId, { after: cursor, limit: GAP_PAGE });
        store.dispatch({ type: 'messages.received', messages: msgs });
        if (msgs.length === 0 || (store.getState().cursors[conversationId] ?? 0) <= cursor) break;
      }
    } catch {
      /* the next sync retries */
    } finally {
      this.gapFilling.delete(conversationId);
    }
    this.scheduleReceipts();
  }

  /** Page back through history; resolves to the number of messages loaded. */
  async loadOlder(conversationId: string): Promise<number> {
    const before = historyBefore(this.opts.store.getState(), conversationId);
    if (before === null) return 0;
    const msgs = await this.opts.api.messages(conversationId, { before, limit: HISTORY_PAGE });
    const older = msgs.filter((m) => m.seq < before);
    this.opts.store.dispatch({
      type: 'history.loaded',
      conversation_id: conversationId,
      messages: older,
      complete: msgs.length < HISTORY_PAGE || older.length === 0,
    });
    return older.length;
  }

  async refreshReceipts(conversationId: string): Promise<void> {
    try {
      const receipts = await this.opts.api.receipts(conversationId);
      this.opts.store.dispatch({ type: 'receipts.loaded', conversation_id: conversationId, receipts });
    } catch {
      /* receipts frames keep coming; the next open retries */
    }
  }

  /** If moderation frames may have been missed for this conversation, apply history's view of its newest messages. */
  async recheckModeration(conversationId: string): Promise<void> {
    if (!this.moderationStale.delete(conversationId)) return;
    const highest = highestSeq(this.opts.store.getState(), conversationId);
    if (highest === 0) return;
    const seen = this.moderationFrames;
    try {
      const msgs = await this.opts.api.messages(conversationId, { before: highest + 1, limit: MODERATION_CHECK_PAGE });
      // A live redaction or restore since the request may be newer than this answer: ask again next time.
      if (seen !== this.moderationFrames) this.moderationStale.add(conversationId);
      else this.opts.store.dispatch({ type: 'moderation.reconciled', conversation_id: conversationId, messages: msgs });
    } catch {
      this.moderationStale.add(conversationId);
    }
  }

  // ------------------------------------------------------------ presence

  private ensurePresenceSubscriptions() {
    if (!this.wsOpened) return;
    const targets = presenceTargets(this.opts.store.getState()).filter((u) => !this.subscribed.has(u));
    for (let i = 0; i < targets.length; i += MAX_PRESENCE_USERS) {
      const chunk = targets.slice(i, i + MAX_PRESENCE_USERS);
      for (const u of chunk) this.subscribed.add(u);
      this.request((id) => frames.presenceSubscribe(chunk, id)).catch((f: ErrorFrame) => {
        for (const u of chunk) this.subscribed.delete(u);
        // Presence costs a token per user: with many contacts, the rest waits its turn.
        if (f?.code === 'rate_limited') {
          setTimeout(() => this.ensurePresenceSubscriptions(), Math.max(100, f.retry_after_ms ?? 1000));
        }
      });
    }
  }

  // ------------------------------------------------------------ receipts

  /** Which conversation is on screen, and whether the page is visible (for read receipts). */
  setView(conversationId: string | null, visible: boolean) {
    const opened = conversationId !== null && conversationId !== this.openConversation;
    this.openConversation = conversationId;
    this.visible = visible;
    if (opened) {
      void this.refreshReceipts(conversationId);
      void this.recheckModeration(conversationId);
    }
    this.scheduleReceipts();
  }

  private scheduleReceipts() {
    this.readOpenLocally();
    if (this.receiptTimer) return;
    this.receiptTimer = setTimeout(() => {
      this.receiptTimer = null;
      this.flushReceipts();
    }, RECEIPT_THROTTLE_MS);
  }

  private sendRead(conversationId: string, seq: number) {
    if (seq <= 0 || (this.readSent.get(conversationId) ?? 0) >= seq) return;
    if (this.send(frames.read(conversationId, seq))) this.readSent.set(conversationId, seq);
    this.opts.store.dispatch({ type: 'read.local', conversation_id: conversationId, seq });
  }

  /** Send `message.delivered` for every advanced cursor and `receipt.read` for the open conversation. */
  private flushReceipts() {
    if (!this.wsOpened) return;
    const st = this.opts.store.getState();
    for (const [conv, cursor] of Object.entries(st.cursors)) {
      if (!st.conversations[conv] || cursor <= (this.deliveredSent.get(conv) ?? 0)) continue;
      if (this.send(frames.delivered(conv, cursor))) this.deliveredSent.set(conv, cursor);
    }
    const open = this.openConversation;
    if (open && this.visible && st.conversations[open]) this.sendRead(open, st.cursors[open] ?? 0);
  }

  /** Mark the open, visible conversation read locally right away (the frame itself is throttled). */
  private readOpenLocally() {
    const open = this.openConversation;
    if (!open || !this.visible) return;
    const st = this.opts.store.getState();
    const cursor = st.cursors[open] ?? 0;
    if (st.conversations[open] && cursor > myReadSeq(st, open)) {
      this.opts.store.dispatch({ type: 'read.local', conversation_id: open, seq: cursor });
    }
  }

  // ------------------------------------------------------------ typing

  /** Call on every composer change: sends `typing start` at most every 3 s, `stop` when cleared. */
  typing(conversationId: string, text: string) {
    if (text.trim() === '') return this.stopTyping(conversationId);
    const now = this.opts.store.now();
    const last = this.typingStartedAt.get(conversationId);
    if (last === undefined || now - last >= TYPING_REFRESH_MS) {
      if (this.send(frames.typing(conversationId, 'start'))) this.typingStartedAt.set(conversationId, now);
    }
    const idle = this.typingIdle.get(conversationId);
    if (idle) clearTimeout(idle);
    this.typingIdle.set(
      conversationId,
      setTimeout(() => this.stopTyping(conversationId), TYPING_IDLE_MS),
    );
  }

  /** Send `typing stop` if a start is outstanding (on send, blur, clear, idle). */
  stopTyping(conversationId: string) {
    const idle = this.typingIdle.get(conversationId);
    if (idle) clearTimeout(idle);
    this.typingIdle.delete(conversationId);
    if (!this.typingStartedAt.has(conversationId)) return;
    this.typingStartedAt.delete(conversationId);
    this.send(frames.typing(conversationId, 'stop'));
  }

  // ------------------------------------------------------------ sending

  /** Queue a message optimistically and send it; returns its client_msg_id. */
  sendMessage(conversationId: string, body: string, attachments?: Attachment[]): string {
    const cmid = newClientMsgId();
    const store = this.opts.store;
    store.dispatch({
      type: 'message.pending',
      conversation_id: conversationId,
      client_msg_id: cmid,
      body,
      now: store.now(),
      ...(attachments?.length ? { attachments } : {}),
    });
    this.stopTyping(conversationId);
    this.transmit(cmid, true);
    return cmid;
  }

  /** Retry a failed message with the same client_msg_id. */
  retry(clientMsgId: string) {
    this.opts.store.dispatch({ type: 'message.retry', client_msg_id: clientMsgId });
    this.transmit(clientMsgId, true);
  }

  discard(clientMsgId: string) {
    const t = this.sends.get(clientMsgId);
    if (t) this.clearSendTimers(t);
    this.sends.delete(clientMsgId);
    this.opts.store.dispatch({ type: 'message.discard', client_msg_id: clientMsgId });
  }

  private clearSendTimers(t: SendTracking) {
    if (t.ackTimer) clearTimeout(t.ackTimer);
    if (t.retryTimer) clearTimeout(t.retryTimer);
    t.ackTimer = t.retryTimer = null;
  }

  /** (Re)send a pending message; while offline it waits for the next connect. */
  private transmit(cmid: string, resetAttempts = false) {
    const p = this.opts.store.getState().pending[cmid];
    if (!p || p.status !== 'pending') return;
    let t = this.sends.get(cmid);
    if (!t) {
      t = { attempts: 0, ackTimer: null, retryTimer: null };
      this.sends.set(cmid, t);
    }
    if (resetAttempts) t.attempts = 0;
    this.clearSendTimers(t);
    if (!this.wsOpened) return;
    const id = this.allocId('m');
    if (!this.send(frames.send(p.conversation_id, cmid, p.body, id, p.attachments))) return;
    this.sendIds.set(id, cmid);
    t.attempts++;
    const track = t;
    track.ackTimer = setTimeout(() => {
      track.ackTimer = null;
      this.sendIds.delete(id);
      if (track.attempts >= MAX_SEND_ATTEMPTS) {
        this.fail(cmid, 'No acknowledgement from the server');
      } else this.transmit(cmid);
    }, ACK_TIMEOUT_MS);
  }

  private fail(cmid: string, error: string, code?: string) {
    const t = this.sends.get(cmid);
    if (t) this.clearSendTimers(t);
    this.sends.delete(cmid);
    this.opts.store.dispatch({ type: 'message.failed', client_msg_id: cmid, error, ...(code ? { code } : {}) });
  }

  private onSendError(cmid: string, f: ErrorFrame) {
    const t = this.sends.get(cmid);
    if (!t) return;
    this.clearSendTimers(t);
    const retryable = f.code === 'rate_limited' || f.code === 'unavailable' || f.code === 'internal';
    if (retryable && t.attempts < MAX_SEND_ATTEMPTS) {
      const delay = f.code === 'rate_limited' ? Math.max(100, f.retry_after_ms ?? 1000) : backoffDelay(t.attempts);
      t.retryTimer = setTimeout(() => {
        t.retryTimer = null;
        this.transmit(cmid);
      }, delay);
      return;
    }
    this.fail(cmid, describeError(f), f.code);
  }

  // ------------------------------------------------------------ conversations

  async createDirect(user: string): Promise<Conversation> {
    return conversationOf(await this.request((id) => frames.createDirect(user, id)));
  }

  async createGroup(title: string, members: string[]): Promise<Conversation> {
    return conversationOf(await this.request((id) => frames.createGroup(members, title || undefined, id)));
  }

  async addMembers(conversationId: string, members: string[]): Promise<Conversation> {
    return conversationOf(await this.request((id) => frames.addMembers(conversationId, members, id)));
  }

  async removeMembers(conversationId: string, members: string[]): Promise<Conversation | null> {
    const ok = await this.request((id) => frames.removeMembers(conversationId, members, id));
    return ok.conversation ?? null;
  }

  // ------------------------------------------------------------ moderation

  /** Report a message to the moderators; resolves on `ok`, rejects with the `error` frame. */
  async report(conversationId: string, seq: number, reason: string, note: string): Promise<void> {
    await this.request((id) => frames.report(conversationId, seq, reason, note, id));
  }
}

function conversationOf(ok: OkFrame): Conversation {
  if (!ok.conversation) throw { type: 'error', code: 'internal', message: 'No conversation in reply' } satisfies ErrorFrame;
  return ok.conversation;
}

const ERROR_TEXT: Record<string, string> = {
  bad_request: 'The server rejected the request',
  too_large: 'Too large',
  not_member: 'You are not a member of this conversation',
  not_found: 'Not found',
  forbidden: 'Not allowed',
  rate_limited: 'Sending too fast',
  unavailable: 'Service unavailable — try again',
  internal: 'Server error',
};

export function describeError(e: unknown): string {
  if (e && typeof e === 'object' && 'code' in e) {
    const f = e as ErrorFrame;
    if (f.code === 'blocked') return blockedText(f.reason);
    return f.message ? `${ERROR_TEXT[f.code] ?? f.code}: ${f.message}` : ERROR_TEXT[f.code] ?? f.code;
  }
  return e instanceof Error ? e.message : String(e);
}
