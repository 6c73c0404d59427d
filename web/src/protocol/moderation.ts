/**
 * Moderation in the client (docs/moderation.md): the texts for refused and hidden messages, the
 * report choices, the moderator role, and the moderator panel's state as a pure reducer over the
 * REST queue. No I/O: `moderationApi.ts` fetches, the panel dispatches.
 */
import { charCount, type Message } from './frames';

/** The role claim that opens the moderation API; the UI only uses it to show the panel. */
export const MODERATOR_ROLE = 'moderator';

/** `message.report` limits (the server's MAX_REPORT_REASON / MAX_REPORT_NOTE). */
export const MAX_REPORT_REASON = 64;
export const MAX_REPORT_NOTE = 1000;
/** A moderator action's `reason` (the API's MAX_REASON). */
export const MAX_ACTION_REASON = 200;

/** The reasons a member picks from when reporting; `value` is what the server stores. */
export const REPORT_REASONS = [
  { value: 'spam', label: 'Spam or scam' },
  { value: 'harassment', label: 'Harassment' },
  { value: 'offensive', label: 'Offensive content' },
  { value: 'other', label: 'Something else' },
] as const;
export type ReportReason = (typeof REPORT_REASONS)[number]['value'];

/** Why the rules refused a `message.send` (`error.reason`), as the sender reads it. */
const BLOCKED_REASONS: Record<string, string> = {
  banned: 'you are banned from sending messages',
  muted: 'you are muted for now',
  blocked_term: 'it contains a word the rules block',
  blocked_domain: 'it links to a blocked site',
  new_account_links: 'new accounts cannot send links yet',
};

export function blockedText(reason: string | undefined): string {
  const why = reason ? BLOCKED_REASONS[reason] ?? reason : '';
  return why ? `Blocked by moderation: ${why}` : 'Blocked by moderation';
}

/** The placeholder text of a hidden message. */
export function redactedText(reason: string): string {
  return reason ? `Message removed by moderation (${reason})` : 'Message removed by moderation';
}

/** Whether a report's fields are within the protocol's limits; the error to show, or null. */
export function reportError(reason: string, note: string): string | null {
  const n = charCount(reason.trim());
  if (n === 0) return 'Pick a reason';
  if (n > MAX_REPORT_REASON) return `A reason is at most ${MAX_REPORT_REASON} characters`;
  if (charCount(note) > MAX_REPORT_NOTE) return `A note is at most ${MAX_REPORT_NOTE} characters`;
  return null;
}

/** The roles a JWT payload claims (decoded without verification: display only). */
export function rolesOf(payload: Record<string, unknown> | null): string[] {
  const roles = payload?.roles;
  return Array.isArray(roles) ? roles.filter((r): r is string => typeof r === 'string') : [];
}

// ---------------------------------------------------------------- the moderators' queue

export const QUEUE_STATUSES = ['open', 'redacted', 'resolved'] as const;
export type QueueStatus = (typeof QUEUE_STATUSES)[number];

/** One flag, report or action on a queued message. */
export interface QueueEvent {
  kind: string;
  reason: string;
  source: string;
  by: string | null;
  evidence: Record<string, unknown>;
  at: number;
}

/** One judged message, as `GET /v1/moderation/queue` answers it. */
export interface QueueItem {
  id: string;
  conversation_id: string;
  seq: number;
  status: string;
  sender: string | null;
  entries: QueueEvent[];
  /** The message as sent (hidden or not), or null when the store no longer has it. */
  message: Message | null;
}

export type MessageAction = 'redact' | 'restore' | 'dismiss';
export type UserAction = 'mute' | 'ban' | 'unban';

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

function parseEvent(v: unknown): QueueEvent | null {
  if (!isRecord(v) || typeof v.kind !== 'string') return null;
  return {
    kind: v.kind,
    reason: str(v.reason),
    source: str(v.source),
    by: typeof v.by === 'string' ? v.by : null,
    evidence: isRecord(v.evidence) ? v.evidence : {},
    at: typeof v.at === 'number' ? v.at : 0,
  };
}

/** The queue from a REST answer; malformed entries are skipped, events sorted oldest first. */
export function parseQueue(body: unknown): QueueItem[] {
  const list = isRecord(body) && Array.isArray(body.queue) ? body.queue : [];
  const out: QueueItem[] = [];
  for (const v of list) {
    if (!isRecord(v) || typeof v.conversation_id !== 'string' || typeof v.seq !== 'number') continue;
    const entries = (Array.isArray(v.entries) ? v.entries : [])
      .map(parseEvent)
      .filter((e): e is QueueEvent => e !== null)
      .sort((a, b) => a.at - b.at);
    const m = v.message;
    out.push({
      id: typeof v.id === 'string' ? v.id : `${v.conversation_id}:${v.seq}`,
      conversation_id: v.conversation_id,
      seq: v.seq,
      status: str(v.status),
      sender: typeof v.sender === 'string' ? v.sender : isRecord(m) && typeof m.sender === 'string' ? m.sender : null,
      entries,
      message: isRecord(m) && typeof m.body === 'string' ? (m as unknown as Message) : null,
    });
  }
  return out;
}

/** One line per event: who or what flagged the message, why, and its evidence. */
export function describeEvent(e: QueueEvent): string {
  const who =
    e.source === 'report' ? `reported by ${e.by ?? 'a member'}` : e.source === 'moderator' ? `${e.kind} by ${e.by ?? 'a moderator'}` : `${e.kind} by ${e.source || 'the rules'}`;
  const evidence = Object.entries(e.evidence)
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(', ');
  return [who, e.reason && `“${e.reason}”`, evidence && `(${evidence})`].filter(Boolean).join(' ');
}

/** The reason a moderator's action starts from: the latest flag's or report's (they may change it). */
export function suggestedReason(item: QueueItem): string {
  for (let i = item.entries.length - 1; i >= 0; i--) {
    const e = item.entries[i];
    if (e.source !== 'moderator' && e.reason) return e.reason;
  }
  return '';
}

/** What the moderator panel shows: one queue tab, and the outcome of each action taken from it. */
export interface ModerationState {
  status: QueueStatus;
  items: QueueItem[];
  loading: boolean;
  error: string | null;
  /** Action in flight per key (`item:<id>` or `user:<name>`). */
  busy: Record<string, string>;
  /** The outcome of the last action per key, shown beside the item until the next one. */
  outcome: Record<string, { ok: boolean; text: string }>;
}

export type ModerationAction =
  | { type: 'view'; status: QueueStatus }
  | { type: 'load.start' }
  | { type: 'load.done'; status: QueueStatus; items: QueueItem[] }
  | { type: 'load.failed'; status: QueueStatus; error: string }
  | { type: 'act.start'; key: string; action: string }
  | { type: 'act.done'; key: string; text: string }
  | { type: 'act.failed'; key: string; error: string };

export const itemKey = (item: Pick<QueueItem, 'id'>): string => `item:${item.id}`;
export const userKey = (user: string): string => `user:${user}`;

export function initialModeration(status: QueueStatus = 'open'): ModerationState {
  return { status, items: [], loading: false, error: null, busy: {}, outcome: {} };
}

export function reduceModeration(state: ModerationState, action: ModerationAction): ModerationState {
  switch (action.type) {
    case 'view':
      return action.status === state.status ? state : { ...initialModeration(action.status), loading: true };
    case 'load.start':
      return { ...state, loading: true };
    case 'load.done':
      // An answer for a tab no longer shown is stale.
      if (action.status !== state.status) return state;
      return { ...state, loading: false, error: null, items: action.items };
    case 'load.failed':
      if (action.status !== state.status) return state;
      return { ...state, loading: false, error: action.error };
    case 'act.start': {
      const outcome = { ...state.outcome };
      delete outcome[action.key];
      return { ...state, busy: { ...state.busy, [action.key]: action.action }, outcome };
    }
    case 'act.done':
    case 'act.failed': {
      const busy = { ...state.busy };
      delete busy[action.key];
      const result = action.type === 'act.done' ? { ok: true, text: action.text } : { ok: false, text: action.error };
      return { ...state, busy, outcome: { ...state.outcome, [action.key]: result } };
    }
  }
}
