/**
 * Wire frames of client protocol v1 (see PROTOCOL.md): one type per frame, plus builders.
 * Pure module: no I/O, no globals.
 */

/** A frame id the server echoes on direct replies (`ok`, `error`, `message.ack`, `sync.done`, `pong`). */
export type FrameId = string | number;

export type ConversationKind = 'direct' | 'group';

/** A conversation as the server describes it (`read_seq` only in the REST list). */
export interface Conversation {
  id: string;
  kind: ConversationKind;
  title: string | null;
  members: string[];
  admins: string[];
  last_seq: number;
  read_seq?: number;
}

/** A sequenced message, as in `message` frames and the REST history. */
export interface Message {
  conversation_id: string;
  seq: number;
  sender: string;
  body: string;
  ts: number;
  client_msg_id: string | null;
  /** Pictures and files (docs/media.md): metadata only; the bytes come from `GET /v1/media/{id}`. */
  attachments?: Attachment[];
  /** Hidden by moderation: `body` is "" and this says why (docs/moderation.md). */
  redacted?: { reason: string };
}

/** A media attached to a message, as the edge resolved it (its type sniffed from the bytes). */
export interface Attachment {
  media_id: string;
  name: string;
  type: string;
  size: number;
  width?: number;
  height?: number;
  /** A thumbnail exists (`GET /v1/media/{id}?variant=thumb`). */
  thumbnail?: boolean;
  /** A blurhash to paint while the thumbnail loads. */
  placeholder?: string;
}

export type ReceiptKind = 'read' | 'delivered';
export type TypingState = 'start' | 'stop';
export type PresenceStatus = 'online' | 'offline';

export type ErrorCode =
  | 'bad_request'
  | 'unknown_type'
  | 'too_large'
  | 'not_member'
  | 'not_found'
  | 'forbidden'
  | 'rate_limited'
  | 'unavailable'
  | 'internal'
  | 'unauthorized'
  /** A `message.send` the moderation rules refused; `reason` on the frame says which rule. */
  | 'blocked';

/** WebSocket close codes the client reacts to. */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  PolicyViolation: 1008,
  TooLarge: 1009,
  TokenExpired: 4003,
} as const;

// ---------------------------------------------------------------- client → server

interface WithId {
  id?: FrameId;
}

export interface ConversationCreateFrame extends WithId {
  type: 'conversation.create';
  kind: ConversationKind;
  members: string[];
  title?: string;
}
export interface ConversationAddMembersFrame extends WithId {
  type: 'conversation.add_members';
  conversation_id: string;
  members: string[];
}
export interface ConversationRemoveMembersFrame extends WithId {
  type: 'conversation.remove_members';
  conversation_id: string;
  members: string[];
}
export interface MessageSendFrame extends WithId {
  type: 'message.send';
  conversation_id: string;
  client_msg_id: string;
  body: string;
  attachments?: { media_id: string }[];
}
export interface MessageDeliveredFrame extends WithId {
  type: 'message.delivered';
  conversation_id: string;
  seq: number;
}
export interface ReceiptReadFrame extends WithId {
  type: 'receipt.read';
  conversation_id: string;
  seq: number;
}
export interface TypingClientFrame extends WithId {
  type: 'typing';
  conversation_id: string;
  state: TypingState;
}
export interface SyncFrame extends WithId {
  type: 'sync';
  cursors?: Record<string, number>;
}
export interface PresenceSubscribeFrame extends WithId {
  type: 'presence.subscribe';
  users: string[];
}
export interface PresenceQueryFrame extends WithId {
  type: 'presence.query';
  users: string[];
}
export interface MessageReportFrame extends WithId {
  type: 'message.report';
  conversation_id: string;
  seq: number;
  reason: string;
  note?: string;
}
export interface PingFrame extends WithId {
  type: 'ping';
}
/** Answer to a server-initiated application ping (the protocol's server pings are WS-level; this is defensive). */
export interface PongClientFrame extends WithId {
  type: 'pong';
}

export type ClientFrame =
  | ConversationCreateFrame
  | ConversationAddMembersFrame
  | ConversationRemoveMembersFrame
  | MessageSendFrame
  | MessageDeliveredFrame
  | ReceiptReadFrame
  | TypingClientFrame
  | SyncFrame
  | PresenceSubscribeFrame
  | PresenceQueryFrame
  | MessageReportFrame
  | PingFrame
  | PongClientFrame;

// ---------------------------------------------------------------- server → client

export interface MessageServerFrame extends Message {
  type: 'message';
}
/** Moderation hid a message: show its placeholder at that seq. */
export interface MessageRedactedFrame {
  type: 'message.redacted';
  conversation_id: string;
  seq: number;
  reason: string;
}
/** A moderator gave a hidden message back. */
export interface MessageRestoredFrame {
  type: 'message.restored';
  conversation_id: string;
  seq: number;
  message: Message;
}
export interface MessageAckFrame {
  type: 'message.ack';
  id?: FrameId;
  conversation_id: string;
  client_msg_id: string;
  seq: number;
  ts: number;
}
export interface ReceiptFrame {
  type: 'receipt';
  conversation_id: string;
  user: string;
  kind: ReceiptKind;
  seq: number;
}
export interface TypingServerFrame {
  type: 'typing';
  conversation_id: string;
  user: string;
  state: TypingState;
}
export interface PresenceFrame {
  type: 'presence';
  user: string;
  status: PresenceStatus;
  last_seen?: number | null;
}
export type ConversationEvent = 'created' | 'members_added' | 'members_removed';
export interface ConversationServerFrame {
  type: 'conversation';
  event: ConversationEvent;
  conversation: Conversation;
}
/** One presence entry; `ok.presence` may come as a list of these or as a map user → entry. */
export interface PresenceEntry {
  user: string;
  status: PresenceStatus;
  last_seen?: number | null;
}
export interface OkFrame {
  type: 'ok';
  id?: FrameId;
  conversation?: Conversation;
  presence?: PresenceEntry[] | Record<string, Omit<PresenceEntry, 'user'> | PresenceStatus>;
}
export interface ErrorFrame {
  type: 'error';
  id?: FrameId;
  code: ErrorCode | string;
  message?: string;
  retry_after_ms?: number;
  /** With `blocked`: the rule that refused the message (`blocked_term`, `muted`, …). */
  reason?: string;
}
export interface SyncDoneFrame {
  type: 'sync.done';
  id?: FrameId;
  conversations: Record<string, number>;
  truncated: boolean;
}
export interface PongServerFrame {
  type: 'pong';
  id?: FrameId;
}
/** A server-initiated application ping (not in the v1 table; answered with `pong` if it ever comes). */
export interface PingServerFrame {
  type: 'ping';
  id?: FrameId;
}

export type ServerFrame =
  | MessageServerFrame
  | MessageRedactedFrame
  | MessageRestoredFrame
  | MessageAckFrame
  | ReceiptFrame
  | TypingServerFrame
  | PresenceFrame
  | ConversationServerFrame
  | OkFrame
  | ErrorFrame
  | SyncDoneFrame
  | PongServerFrame
  | PingServerFrame;

// ---------------------------------------------------------------- REST bodies

export interface ConversationsResponse {
  conversations: Conversation[];
  /** The `after` of the next page; null (or absent, from older servers) after the last. */
  next?: string | null;
}
export interface MessagesResponse {
  messages: Message[];
}
export interface ReceiptsResponse {
  receipts: Record<string, { read?: number; delivered?: number }>;
}
export interface DevTokenResponse {
  token: string;
  user: string;
  expires_at: number;
}

// ---------------------------------------------------------------- limits

export const USER_ID_RE = /^[A-Za-z0-9_.@-]{1,64}$/;
export const MAX_BODY_CHARS = 4000;
export const MAX_TITLE_CHARS = 200;
export const MAX_PRESENCE_USERS = 500;
export const MAX_CLIENT_MSG_ID = 64;
/** Client-side typing timings (PROTOCOL.md "Typing and presence"). */
export const TYPING_REFRESH_MS = 3000;
export const TYPING_EXPIRE_MS = 6000;

export function isValidUserId(u: string): boolean {
  return USER_ID_RE.test(u);
}

/** Direct conversation id for two users: `dm:<lo>:<hi>` in byte order. */
export function directConversationId(a: string, b: string): string {
  const [lo, hi] = compareBytes(a, b) <= 0 ? [a, b] : [b, a];
  return `dm:${lo}:${hi}`;
}

/** Byte-order comparison (user ids are ASCII, so UTF-16 code units order the same way). */
export function compareBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Number of user-visible characters (code points), which is how the 4000-character limit counts. */
export function charCount(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

// ---------------------------------------------------------------- builders

const withId = <T extends object>(frame: T, id?: FrameId): T & WithId =>
  id === undefined ? frame : { ...frame, id };

export const frames = {
  createDirect: (otherUser: string, id?: FrameId): ConversationCreateFrame =>
    withId({ type: 'conversation.create', kind: 'direct', members: [otherUser] } as const, id),
  createGroup: (members: string[], title?: string, id?: FrameId): ConversationCreateFrame =>
    withId(
      {
        type: 'conversation.create',
        kind: 'group',
        members: [...members],
        ...(title ? { title } : {}),
      } as ConversationCreateFrame,
      id,
    ),
  addMembers: (conversationId: string, members: string[], id?: FrameId): ConversationAddMembersFrame =>
    withId({ type: 'conversation.add_members', conversation_id: conversationId, members: [...members] } as const, id),
  removeMembers: (conversationId: string, members: string[], id?: FrameId): ConversationRemoveMembersFrame =>
    withId(
      { type: 'conversation.remove_members', conversation_id: conversationId, members: [...members] } as const,
      id,
    ),
  send: (
    conversationId: string,
    clientMsgId: string,
    body: string,
    id?: FrameId,
    attachments?: Attachment[],
  ): MessageSendFrame =>
    withId(
      {
        type: 'message.send',
        conversation_id: conversationId,
        client_msg_id: clientMsgId,
        body,
        ...(attachments?.length ? { attachments: attachments.map((a) => ({ media_id: a.media_id })) } : {}),
      } as const,
      id,
    ),
  delivered: (conversationId: string, seq: number): MessageDeliveredFrame => ({
    type: 'message.delivered',
    conversation_id: conversationId,
    seq,
  }),
  read: (conversationId: string, seq: number): ReceiptReadFrame => ({
    type: 'receipt.read',
    conversation_id: conversationId,
    seq,
  }),
  typing: (conversationId: string, state: TypingState): TypingClientFrame => ({
    type: 'typing',
    conversation_id: conversationId,
    state,
  }),
  sync: (cursors: Record<string, number> | undefined, id?: FrameId): SyncFrame =>
    withId(cursors === undefined ? ({ type: 'sync' } as SyncFrame) : ({ type: 'sync', cursors: { ...cursors } } as SyncFrame), id),
  presenceSubscribe: (users: string[], id?: FrameId): PresenceSubscribeFrame =>
    withId({ type: 'presence.subscribe', users: [...users] } as const, id),
  presenceQuery: (users: string[], id?: FrameId): PresenceQueryFrame =>
    withId({ type: 'presence.query', users: [...users] } as const, id),
  report: (conversationId: string, seq: number, reason: string, note: string, id?: FrameId): MessageReportFrame =>
    withId(
      {
        type: 'message.report',
        conversation_id: conversationId,
        seq,
        reason,
        ...(note ? { note } : {}),
      } as MessageReportFrame,
      id,
    ),
  ping: (id?: FrameId): PingFrame => withId({ type: 'ping' } as const, id),
  pong: (id?: FrameId): PongClientFrame => withId({ type: 'pong' } as const, id),
};

export function encodeFrame(frame: ClientFrame): string {
  return JSON.stringify(frame);
}

const SERVER_TYPES = new Set([
  'message',
  'message.redacted',
  'message.restored',
  'message.ack',
  'receipt',
  'typing',
  'presence',
  'conversation',
  'ok',
  'error',
  'sync.done',
  'pong',
  'ping',
]);

/** Parse one text frame; returns null for anything that is not a known server frame object. */
export function decodeFrame(text: string): ServerFrame | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const t = (v as { type?: unknown }).type;
  if (typeof t !== 'string' || !SERVER_TYPES.has(t)) return null;
  return v as ServerFrame;
}

/** Normalise the `presence` field of an `ok` reply (list or map) into entries. */
export function presenceEntries(p: OkFrame['presence']): PresenceEntry[] {
  if (!p) return [];
  if (Array.isArray(p)) return p.filter((e) => e && typeof e.user === 'string');
  return Object.entries(p).map(([user, e]) =>
    typeof e === 'string' ? { user, status: e } : { user, status: e.status, last_seen: e.last_seen ?? null },
  );
}

/** Decode a JWT's payload without verifying it (for display only). */
export function decodeJwtPayload(token: string): Record<string, unknown> | null {
  const parts = token.trim().split('.');
  if (parts.length < 2) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const bin = atob(padded);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const json = new TextDecoder().decode(bytes);
    const v = JSON.parse(json);
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
