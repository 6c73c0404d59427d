/**
 * Client chat state: a pure reducer plus selectors. No I/O and no clocks: every action that
 * depends on time carries `now` (ms since epoch), so the reducer is deterministic.
 */
import {
  compareBytes,
  TYPING_EXPIRE_MS,
  type Conversation,
  type Attachment,
  type ConversationEvent,
  type Message,
  type PresenceEntry,
  type PresenceStatus,
  type ReceiptKind,
  type TypingState,
} from './frames';

/** How many recent messages a conversation's first sync asks for beyond the read cursor. */
export const INITIAL_SYNC_WINDOW = 50;

export interface ConversationState extends Conversation {
  /** My read cursor (cumulative max of REST `read_seq` and my own `receipt` frames). */
  read_seq: number;
  /** Sort key for the list: the newest message time seen, or the local creation time. */
  activity: number;
}

/** An optimistic send not yet acknowledged, keyed by its `client_msg_id`. */
export interface PendingMessage {
  conversation_id: string;
  client_msg_id: string;
  body: string;
  /** Local time it was composed (shown until the ack brings the server's `ts`). */
  created: number;
  status: 'pending' | 'failed';
  /** Uploaded and verified before the send: sent again with every retry. */
  attachments?: Attachment[];
  error?: string;
  /** The error code of the refusal (`blocked`: the moderation rules refused it; retrying is pointless). */
  code?: string;
}

export interface ReceiptCursors {
  read: number;
  delivered: number;
}

export interface PresenceInfo {
  status: PresenceStatus;
  last_seen: number | null;
}

export interface ChatState {
  me: string;
  conversations: Record<string, ConversationState>;
  /** Acknowledged messages per conversation: unique by seq, ascending. */
  messages: Record<string, Message[]>;
  /** My unacknowledged sends, keyed by client_msg_id. */
  pending: Record<string, PendingMessage>;
  /** Receipt cursors per conversation and user (cumulative maxima). */
  receipts: Record<string, Record<string, ReceiptCursors>>;
  /** Who is typing where: conversation → user → expiry time (ms). */
  typing: Record<string, Record<string, number>>;
  presence: Record<string, PresenceInfo>;
  /** Highest contiguous seq seen per conversation (what `sync` sends). */
  cursors: Record<string, number>;
  /** Conversations whose history has been paged back to seq 1. */
  historyComplete: Record<string, true>;
}

export type Action =
  | { type: 'reset'; me: string }
  | { type: 'conversations.loaded'; conversations: Conversation[]; now: number }
  | { type: 'conversation.upsert'; conversation: Conversation; event?: ConversationEvent; now: number }
  | { type: 'conversation.remove'; conversation_id: string }
  | { type: 'messages.received'; messages: Message[] }
  | { type: 'history.loaded'; conversation_id: string; messages: Message[]; complete: boolean }
  | { type: 'message.pending'; conversation_id: string; client_msg_id: string; body: string; now: number; attachments?: Attachment[] }
  | { type: 'message.acked'; conversation_id: string; client_msg_id: string; seq: number; ts: number }
  | { type: 'message.failed'; client_msg_id: string; error: string; code?: string }
  | { type: 'message.retry'; client_msg_id: string }
  | { type: 'message.discard'; client_msg_id: string }
  | { type: 'message.redacted'; conversation_id: string; seq: number; reason: string }
  | { type: 'message.restored'; message: Message }
  /** A fresh history page: loaded messages take its moderation state (hidden or not), nothing else. */
  | { type: 'moderation.reconciled'; conversation_id: string; messages: Message[] }
  | { type: 'pending.restore'; pending: PendingMessage[] }
  | { type: 'receipt'; conversation_id: string; user: string; kind: ReceiptKind; seq: number }
  | {
      type: 'receipts.loaded';
      conversation_id: string;
      receipts: Record<string, { read?: number; delivered?: number }>;
    }
  | { type: 'read.local'; conversation_id: string; seq: number }
  | { type: 'typing'; conversation_id: string; user: string; state: TypingState; now: number }
  | { type: 'typing.expire'; now: number }
  | { type: 'presence'; entries: PresenceEntry[] }
  | { type: 'sync.done'; conversations: Record<string, number> };

export function initialState(me: string): ChatState {
  return {
    me,
    conversations: {},
    messages: {},
    pending: {},
    receipts: {},
    typing: {},
    presence: {},
    cursors: {},
    historyComplete: {},
  };
}

/**
 * Where a conversation's cursor starts when first seen: just below my read cursor (so unread
 * messages come by `sync`), but at least one message back (for the list preview) and at most
 * INITIAL_SYNC_WINDOW back (older ones are history, paged by REST).
 */
export function initialCursor(lastSeq: number, readSeq: number): number {
  const floor = Math.max(readSeq, lastSeq - INITIAL_SYNC_WINDOW);
  return Math.max(0, Math.min(lastSeq - 1, floor));
}

// ---------------------------------------------------------------- helpers (pure)

function nonNeg(n: unknown): number {
  return typeof n === 'number' && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

/** Index of the first message whose seq is >= seq (binary search). */
function lowerBound(list: Message[], seq: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid].seq < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Insert messages into a sorted, seq-unique list; returns the same array when nothing changed. */
export function mergeMessages(list: Message[] | undefined, incoming: Message[]): Message[] {
  let out = list ?? [];
  let copied = false;
  for (const m of incoming) {
    const i = lowerBound(out, m.seq);
    if (i < out.length && out[i].seq === m.seq) continue; // duplicate (conversation_id, seq)
    if (!copied) {
      out = out.slice();
      copied = true;
    }
    out.splice(i, 0, m);
  }
  return copied ? out : list ?? out;
}

function advanceCursor(cursor: number, list: Message[]): number {
  let c = cursor;
  let i = lowerBound(list, c + 1);
  while (i < list.length && list[i].seq === c + 1) {
    c++;
    i++;
  }
  return c;
}

function normalizeConversation(c: Conversation, prev: ConversationState | undefined, now: number): ConversationState {
  return {
    id: c.id,
    kind: c.kind,
    title: c.title ?? null,
    members: Array.isArray(c.members) ? [...c.members] : prev?.members ?? [],
    admins: Array.isArray(c.admins) ? [...c.admins] : prev?.admins ?? [],
    last_seq: Math.max(nonNeg(c.last_seq), prev?.last_seq ?? 0),
    read_seq: Math.max(nonNeg(c.read_seq), prev?.read_seq ?? 0),
    activity: prev?.activity ?? now,
  };
}

function withoutKey<T>(rec: Record<string, T>, key: string): Record<string, T> {
  if (!(key in rec)) return rec;
  const out = { ...rec };
  delete out[key];
  return out;
}

function dropConversation(state: ChatState, id: string): ChatState {
  const pending: Record<string, PendingMessage> = {};
  for (const [k, p] of Object.entries(state.pending)) if (p.conversation_id !== id) pending[k] = p;
  return {
    ...state,
    conversations: withoutKey(state.conversations, id),
    messages: withoutKey(state.messages, id),
    receipts: withoutKey(state.receipts, id),
    typing: withoutKey(state.typing, id),
    cursors: withoutKey(state.cursors, id),
    historyComplete: withoutKey(state.historyComplete, id),
    pending,
  };
}

function setTypingUser(
  typing: ChatState['typing'],
  conv: string,
  user: string,
  expires: number | null,
): ChatState['typing'] {
  const cur = typing[conv] ?? {};
  if (expires === null) {
    if (!(user in cur)) return typing;
    const next = withoutKey(cur, user);
    return Object.keys(next).length ? { ...typing, [conv]: next } : withoutKey(typing, conv);
  }
  return { ...typing, [conv]: { ...cur, [user]: expires } };
}

function bumpReceipt(
  receipts: ChatState['receipts'],
  conv: string,
  user: string,
  kind: ReceiptKind,
  seq: number,
): ChatState['receipts'] {
  const perConv = receipts[conv] ?? {};
  const cur = perConv[user] ?? { read: 0, delivered: 0 };
  if (seq <= cur[kind]) return receipts; // cumulative: never move backwards
  return { ...receipts, [conv]: { ...perConv, [user]: { ...cur, [kind]: seq } } };
}

/**
 * Replace the loaded message at `seq` (a redaction or a restore). A seq not loaded yet changes
 * nothing: history and sync bring it in its current form when it is loaded.
 */
function replaceMessage(state: ChatState, conv: string, seq: number, f: (m: Message) => Message): ChatState {
  const list = state.messages[conv];
  if (!list) return state;
  const i = lowerBound(list, seq);
  if (i >= list.length || list[i].seq !== seq) return state;
  const m = f(list[i]);
  if (m === list[i]) return state;
  const next = list.slice();
  next[i] = m;
  return { ...state, messages: { ...state.messages, [conv]: next } };
}

/** The placeholder of a hidden message: only its identity stays, the body (and all it carried) is gone. */
function redactedMessage(m: Message, reason: string): Message {
  return {
    conversation_id: m.conversation_id,
    seq: m.seq,
    sender: m.sender,
    body: '',
    ts: m.ts,
    client_msg_id: m.client_msg_id,
    redacted: { reason },
  };
}

function restoredMessage(m: Message, original: Message): Message {
  const restored: Message = { ...m, ...original, client_msg_id: original.client_msg_id ?? m.client_msg_id };
  delete restored.redacted;
  return restored;
}

/** Add sequenced messages (live, sync or history) to the state. */
/** An attachment as the server sends it (a malformed one is not shown). */
function isAttachment(a: unknown): a is Attachment {
  const x = a as Attachment | null;
  return !!x && typeof x.media_id === 'string' && typeof x.name === 'string' && typeof x.type === 'string' && typeof x.size === 'number';
}

function receiveMessages(state: ChatState, incoming: Message[]): ChatState {
  if (incoming.length === 0) return state;
  const byConv = new Map<string, Message[]>();
  for (const raw of incoming) {
    if (!raw || typeof raw.conversation_id !== 'string' || !(nonNeg(raw.seq) > 0)) continue;
    const m: Message = {
      conversation_id: raw.conversation_id,
      seq: raw.seq,
      sender: raw.sender,
      body: raw.body,
      ts: typeof raw.ts === 'number' ? raw.ts : 0,
      client_msg_id: raw.client_msg_id ?? null,
      ...(raw.redacted ? { redacted: { reason: String(raw.redacted.reason ?? '') } } : {}),
      ...(Array.isArray(raw.attachments) && raw.attachments.length && !raw.redacted
        ? { attachments: raw.attachments.filter(isAttachment) }
        : {}),
    };
    const l = byConv.get(m.conversation_id);
    if (l) l.push(m);
    else byConv.set(m.conversation_id, [m]);
  }
  let s = state;
  for (const [convId, list] of byConv) {
    const before = s.messages[convId];
    const merged = mergeMessages(before, list);
    const cursor0 = s.cursors[convId] ?? Math.max(0, Math.min(...list.map((m) => m.seq)) - 1);
    const cursor = advanceCursor(cursor0, merged);
    const maxSeq = merged.length ? merged[merged.length - 1].seq : 0;
    const maxTs = list.reduce((a, m) => Math.max(a, m.ts), 0);
    let pending = s.pending;
    let typing = s.typing;
    for (const m of list) {
      // My own message from another device (or a replay) resolves the optimistic copy.
      if (m.sender === s.me && m.client_msg_id && pending[m.client_msg_id]) {
        pending = withoutKey(pending, m.client_msg_id);
      }
      // A message from someone ends their typing indicator.
      if (typing[convId]?.[m.sender] !== undefined) typing = setTypingUser(typing, convId, m.sender, null);
    }
    const conv = s.conversations[convId];
    s = {
      ...s,
      messages: merged === before ? s.messages : { ...s.messages, [convId]: merged },
      cursors: { ...s.cursors, [convId]: cursor },
      pending,
      typing,
      conversations: conv
        ? {
            ...s.conversations,
            [convId]: { ...conv, last_seq: Math.max(conv.last_seq, maxSeq), activity: Math.max(conv.activity, maxTs) },
          }
        : s.conversations,
    };
  }
  return s;
}

// ---------------------------------------------------------------- reducer

export function reduce(state: ChatState, action: Action): ChatState {
  switch (action.type) {
    case 'reset':
      return initialState(action.me);

    case 'conversations.loaded': {
      // Merge, never drop: the REST read side may lag behind a conversation just created over the
      // socket. Removal comes from `conversation` events (or a 404, see Connection).
      const s = state;
      const conversations = { ...s.conversations };
      const cursors = { ...s.cursors };
      for (const c of action.conversations) {
        if (!c || typeof c.id !== 'string') continue;
        const conv = normalizeConversation(c, conversations[c.id], action.now);
        conversations[c.id] = conv;
        if (cursors[c.id] === undefined) cursors[c.id] = initialCursor(conv.last_seq, conv.read_seq);
      }
      return { ...s, conversations, cursors };
    }

    case 'conversation.upsert': {
      const c = action.conversation;
      if (!c || typeof c.id !== 'string') return state;
      if (Array.isArray(c.members) && !c.members.includes(state.me)) return dropConversation(state, c.id);
      const prev = state.conversations[c.id];
      const conv = normalizeConversation(c, prev, action.now);
      if (action.event === 'created' && !prev) conv.activity = action.now;
      const cursors =
        state.cursors[c.id] === undefined
          ? { ...state.cursors, [c.id]: initialCursor(conv.last_seq, conv.read_seq) }
          : state.cursors;
      return { ...state, conversations: { ...state.conversations, [c.id]: conv }, cursors };
    }

    case 'conversation.remove':
      return dropConversation(state, action.conversation_id);

    case 'messages.received':
      return receiveMessages(state, action.messages);

    case 'history.loaded': {
      const s = receiveMessages(state, action.messages);
      const loaded = s.messages[action.conversation_id];
      const complete = action.complete || (loaded !== undefined && loaded.length > 0 && loaded[0].seq <= 1);
      return complete ? { ...s, historyComplete: { ...s.historyComplete, [action.conversation_id]: true } } : s;
    }

    case 'message.pending': {
      const p: PendingMessage = {
        conversation_id: action.conversation_id,
        client_msg_id: action.client_msg_id,
        body: action.body,
        created: action.now,
        status: 'pending',
        ...(action.attachments?.length ? { attachments: action.attachments } : {}),
      };
      const conv = state.conversations[action.conversation_id];
      return {
        ...state,
        pending: { ...state.pending, [action.client_msg_id]: p },
        conversations: conv
          ? { ...state.conversations, [conv.id]: { ...conv, activity: Math.max(conv.activity, action.now) } }
          : state.conversations,
      };
    }

    case 'message.acked': {
      const p = state.pending[action.client_msg_id];
      const pending = withoutKey(state.pending, action.client_msg_id);
      if (!p) return pending === state.pending ? state : { ...state, pending };
      const s = receiveMessages({ ...state, pending }, [
        {
          conversation_id: action.conversation_id,
          seq: action.seq,
          sender: state.me,
          body: p.body,
          ts: action.ts,
          client_msg_id: action.client_msg_id,
          ...(p.attachments ? { attachments: p.attachments } : {}),
        },
      ]);
      return s;
    }

    case 'message.failed': {
      const p = state.pending[action.client_msg_id];
      if (!p) return state;
      const failed: PendingMessage = { ...p, status: 'failed', error: action.error };
      if (action.code) failed.code = action.code;
      return { ...state, pending: { ...state.pending, [p.client_msg_id]: failed } };
    }

    case 'message.retry': {
      const p = state.pending[action.client_msg_id];
      if (!p || p.status === 'pending') return state;
      const next: PendingMessage = { ...p, status: 'pending' };
      delete next.error;
      delete next.code;
      return { ...state, pending: { ...state.pending, [p.client_msg_id]: next } };
    }

    case 'message.discard':
      return { ...state, pending: withoutKey(state.pending, action.client_msg_id) };

    case 'message.redacted':
      return replaceMessage(state, action.conversation_id, action.seq, (m) => redactedMessage(m, action.reason));

    case 'message.restored': {
      const r = action.message;
      if (!r || typeof r.conversation_id !== 'string' || !(nonNeg(r.seq) > 0)) return state;
      return replaceMessage(state, r.conversation_id, r.seq, (m) => restoredMessage(m, r));
    }

    case 'moderation.reconciled': {
      let s = state;
      for (const fresh of action.messages ?? []) {
        if (!fresh || fresh.conversation_id !== action.conversation_id) continue;
        s = replaceMessage(s, action.conversation_id, fresh.seq, (m) => {
          if (fresh.redacted) return m.redacted?.reason === fresh.redacted.reason ? m : redactedMessage(m, fresh.redacted.reason);
          return m.redacted ? restoredMessage(m, fresh) : m;
        });
      }
      return s;
    }

    case 'pending.restore': {
      const pending = { ...state.pending };
      for (const p of action.pending) {
        if (p && typeof p.client_msg_id === 'string' && !pending[p.client_msg_id]) pending[p.client_msg_id] = { ...p };
      }
      return { ...state, pending };
    }

    case 'receipt': {
      const seq = nonNeg(action.seq);
      let receipts = bumpReceipt(state.receipts, action.conversation_id, action.user, action.kind, seq);
      // Reading implies delivery.
      if (action.kind === 'read') receipts = bumpReceipt(receipts, action.conversation_id, action.user, 'delivered', seq);
      let conversations = state.conversations;
      const conv = conversations[action.conversation_id];
      if (conv && action.user === state.me && action.kind === 'read' && seq > conv.read_seq) {
        conversations = { ...conversations, [conv.id]: { ...conv, read_seq: seq } };
      }
      if (receipts === state.receipts && conversations === state.conversations) return state;
      return { ...state, receipts, conversations };
    }

    case 'receipts.loaded': {
      let s = state;
      for (const [user, r] of Object.entries(action.receipts ?? {})) {
        s = reduce(s, { type: 'receipt', conversation_id: action.conversation_id, user, kind: 'read', seq: nonNeg(r?.read) });
        s = reduce(s, {
          type: 'receipt',
          conversation_id: action.conversation_id,
          user,
          kind: 'delivered',
          seq: nonNeg(r?.delivered),
        });
      }
      return s;
    }

    case 'read.local': {
      const conv = state.conversations[action.conversation_id];
      if (!conv || action.seq <= conv.read_seq) return state;
      return { ...state, conversations: { ...state.conversations, [conv.id]: { ...conv, read_seq: action.seq } } };
    }

    case 'typing': {
      if (action.user === state.me) return state;
      const expires = action.state === 'start' ? action.now + TYPING_EXPIRE_MS : null;
      const typing = setTypingUser(state.typing, action.conversation_id, action.user, expires);
      return typing === state.typing ? state : { ...state, typing };
    }

    case 'typing.expire': {
      let typing = state.typing;
      for (const [conv, users] of Object.entries(state.typing)) {
        for (const [user, exp] of Object.entries(users)) {
          if (exp <= action.now) typing = setTypingUser(typing, conv, user, null);
        }
      }
      return typing === state.typing ? state : { ...state, typing };
    }

    case 'presence': {
      if (action.entries.length === 0) return state;
      const presence = { ...state.presence };
      for (const e of action.entries) {
        if (!e || typeof e.user !== 'string') continue;
        const prev = presence[e.user];
        presence[e.user] = {
          status: e.status === 'online' ? 'online' : 'offline',
          last_seen: typeof e.last_seen === 'number' ? e.last_seen : prev?.last_seen ?? null,
        };
      }
      return { ...state, presence };
    }

    case 'sync.done': {
      let conversations = state.conversations;
      for (const [id, lastSeq] of Object.entries(action.conversations ?? {})) {
        const conv = conversations[id];
        if (conv && nonNeg(lastSeq) > conv.last_seq) {
          if (conversations === state.conversations) conversations = { ...conversations };
          conversations[id] = { ...conv, last_seq: nonNeg(lastSeq) };
        }
      }
      return conversations === state.conversations ? state : { ...state, conversations };
    }
  }
}

// ---------------------------------------------------------------- selectors

export type BubbleStatus = 'pending' | 'failed' | 'sent' | 'delivered' | 'read';

/** One row of the conversation view: an acknowledged message or an optimistic one. */
export interface Bubble {
  key: string;
  conversation_id: string;
  seq: number | null;
  sender: string;
  body: string;
  ts: number;
  client_msg_id: string | null;
  mine: boolean;
  attachments?: Attachment[];
  /** For my messages: pending/failed/sent/delivered/read; for others' messages: 'sent'. */
  status: BubbleStatus;
  error?: string;
  /** The error code of a failed send (`blocked`). */
  code?: string;
  /** Hidden by moderation: the body is empty; show a placeholder with the reason. */
  redacted?: { reason: string };
}

/** The cursors to send with `sync`. */
export function syncCursors(state: ChatState): Record<string, number> {
  return { ...state.cursors };
}

/** Highest seq loaded for a conversation (0 when none). */
export function highestSeq(state: ChatState, conversationId: string): number {
  const l = state.messages[conversationId];
  return l && l.length ? l[l.length - 1].seq : 0;
}

/** The seq to page history `before`, or null when the beginning is loaded. */
export function historyBefore(state: ChatState, conversationId: string): number | null {
  if (state.historyComplete[conversationId]) return null;
  const l = state.messages[conversationId];
  const lowest = l && l.length ? l[0].seq : (state.cursors[conversationId] ?? 0) + 1;
  return lowest > 1 ? lowest : null;
}

export function myReadSeq(state: ChatState, conversationId: string): number {
  const conv = state.conversations[conversationId];
  const r = state.receipts[conversationId]?.[state.me]?.read ?? 0;
  return Math.max(conv?.read_seq ?? 0, r);
}

export function unreadCount(state: ChatState, conversationId: string): number {
  const conv = state.conversations[conversationId];
  if (!conv) return 0;
  return Math.max(0, conv.last_seq - myReadSeq(state, conversationId));
}

export function totalUnread(state: ChatState): number {
  return Object.keys(state.conversations).reduce((n, id) => n + unreadCount(state, id), 0);
}

/** The other members (everyone but me). */
export function otherMembers(state: ChatState, conversationId: string): string[] {
  const conv = state.conversations[conversationId];
  return conv ? conv.members.filter((m) => m !== state.me) : [];
}

/** For a direct conversation, the other user (from members, or from the dm id). */
export function directPeer(state: ChatState, conv: Conversation): string | null {
  if (conv.kind !== 'direct') return null;
  const other = conv.members.find((m) => m !== state.me);
  if (other) return other;
  const parts = conv.id.split(':');
  return parts.length === 3 ? (parts[1] === state.me ? parts[2] : parts[1]) : null;
}

export function conversationTitle(state: ChatState, conv: Conversation): string {
  if (conv.kind === 'direct') return directPeer(state, conv) ?? conv.id;
  if (conv.title) return conv.title;
  const others = conv.members.filter((m) => m !== state.me);
  return others.length ? others.slice(0, 3).join(', ') + (others.length > 3 ? '…' : '') : 'Group';
}

/** Status of my acknowledged message `seq`: read/delivered once every other member has reached it. */
export function ackedStatus(state: ChatState, conversationId: string, seq: number): BubbleStatus {
  const others = otherMembers(state, conversationId);
  if (others.length === 0) return 'sent';
  const rc = state.receipts[conversationId] ?? {};
  let allRead = true;
  let allDelivered = true;
  for (const u of others) {
    const r = rc[u];
    const read = r?.read ?? 0;
    const delivered = Math.max(r?.delivered ?? 0, read);
    if (read < seq) allRead = false;
    if (delivered < seq) allDelivered = false;
  }
  return allRead ? 'read' : allDelivered ? 'delivered' : 'sent';
}

/** Acknowledged messages followed by my pending ones (oldest first). */
export function bubbles(state: ChatState, conversationId: string): Bubble[] {
  const out: Bubble[] = [];
  for (const m of state.messages[conversationId] ?? []) {
    const mine = m.sender === state.me;
    out.push({
      key: `s${m.seq}`,
      conversation_id: m.conversation_id,
      seq: m.seq,
      sender: m.sender,
      body: m.body,
      ts: m.ts,
      client_msg_id: m.client_msg_id,
      mine,
      status: mine ? ackedStatus(state, conversationId, m.seq) : 'sent',
      ...(m.attachments?.length ? { attachments: m.attachments } : {}),
      ...(m.redacted ? { redacted: m.redacted } : {}),
    });
  }
  const pend = Object.values(state.pending)
    .filter((p) => p.conversation_id === conversationId)
    .sort((a, b) => a.created - b.created);
  for (const p of pend) {
    out.push({
      key: `p${p.client_msg_id}`,
      conversation_id: p.conversation_id,
      seq: null,
      sender: state.me,
      body: p.body,
      ts: p.created,
      client_msg_id: p.client_msg_id,
      mine: true,
      status: p.status,
      error: p.error,
      ...(p.attachments ? { attachments: p.attachments } : {}),
      ...(p.code ? { code: p.code } : {}),
    });
  }
  return out;
}

/** Users currently typing in a conversation (expired entries excluded). */
export function typingUsers(state: ChatState, conversationId: string, now: number): string[] {
  const t = state.typing[conversationId];
  if (!t) return [];
  return Object.entries(t)
    .filter(([, exp]) => exp > now)
    .map(([u]) => u)
    .sort(compareBytes);
}

/** Earliest typing expiry, for scheduling a `typing.expire` (null when nobody types). */
export function nextTypingExpiry(state: ChatState): number | null {
  let min: number | null = null;
  for (const users of Object.values(state.typing)) {
    for (const exp of Object.values(users)) if (min === null || exp < min) min = exp;
  }
  return min;
}

/** Every user worth a presence subscription: all members of my conversations but me. */
export function presenceTargets(state: ChatState): string[] {
  const set = new Set<string>();
  for (const c of Object.values(state.conversations)) for (const m of c.members) if (m !== state.me) set.add(m);
  return [...set].sort(compareBytes);
}

/** What the conversation list shows for a message moderation hid. */
export const REDACTED_PREVIEW = 'Message removed';

export interface ListItem {
  id: string;
  kind: Conversation['kind'];
  title: string;
  peer: string | null;
  preview: string | null;
  previewSender: string | null;
  unread: number;
  activity: number;
}

/** The conversation list, most recently active first. */
export function conversationList(state: ChatState): ListItem[] {
  const items: ListItem[] = [];
  for (const conv of Object.values(state.conversations)) {
    const all = bubbles(state, conv.id);
    const last = all.length ? all[all.length - 1] : null;
    items.push({
      id: conv.id,
      kind: conv.kind,
      title: conversationTitle(state, conv),
      peer: directPeer(state, conv),
      preview: last ? (last.redacted ? REDACTED_PREVIEW : last.body) : null,
      previewSender: last ? last.sender : null,
      unread: unreadCount(state, conv.id),
      activity: Math.max(conv.activity, last?.ts ?? 0),
    });
  }
  return items.sort((a, b) => b.activity - a.activity || compareBytes(a.id, b.id));
}
