import { describe, expect, it } from 'vitest';
import {
  blockedText,
  bubbles,
  conversationList,
  decodeFrame,
  describeEvent,
  frames,
  initialModeration,
  initialState,
  parseQueue,
  reduce,
  reduceModeration,
  redactedText,
  REDACTED_PREVIEW,
  reportError,
  rolesOf,
  suggestedReason,
  type Action,
  type ChatState,
  type Conversation,
  type Message,
  type ModerationAction,
  type ModerationState,
  type QueueItem,
} from '../src/protocol';
import { isModerator, sessionFromToken } from '../src/session';

const DM = 'dm:alice:bob';
const CONV: Conversation = { id: DM, kind: 'direct', title: null, members: ['alice', 'bob'], admins: [], last_seq: 0, read_seq: 0 };

function msg(seq: number, over: Partial<Message> = {}): Message {
  return { conversation_id: DM, seq, sender: 'bob', body: `m${seq}`, ts: 1000 + seq, client_msg_id: `c${seq}`, ...over };
}

function run(...actions: Action[]): ChatState {
  return actions.reduce(reduce, initialState('alice'));
}

const loaded: Action = { type: 'conversations.loaded', conversations: [CONV], now: 1 };
const recv = (...m: Message[]): Action => ({ type: 'messages.received', messages: m });

describe('redacted messages', () => {
  it('a live redaction replaces the loaded message with its placeholder, everywhere it shows', () => {
    const before = run(loaded, recv(msg(1), msg(2)));
    const s = reduce(before, { type: 'message.redacted', conversation_id: DM, seq: 2, reason: 'offensive' });
    expect(s.messages[DM][1]).toEqual({ ...msg(2), body: '', redacted: { reason: 'offensive' } });
    expect(s.messages[DM][0]).toBe(before.messages[DM][0]);
    const b = bubbles(s, DM);
    expect(b[1].redacted).toEqual({ reason: 'offensive' });
    expect(b[1].body).toBe('');
    expect(b[0].redacted).toBeUndefined();
    expect(conversationList(s)[0].preview).toBe(REDACTED_PREVIEW);
    // Cursors and seqs are untouched: the placeholder keeps the seq.
    expect(s.cursors).toEqual(before.cursors);
  });

  it('a redaction drops whatever else the message carried', () => {
    const withExtra: Message = { ...msg(1), attachments: [{ media_id: 'mx', name: 'a.png', type: 'image/png', size: 1 }] };
    const s = run(loaded, recv(withExtra), { type: 'message.redacted', conversation_id: DM, seq: 1, reason: 'spam' });
    expect(Object.keys(s.messages[DM][0]).sort()).toEqual(['body', 'client_msg_id', 'conversation_id', 'redacted', 'sender', 'seq', 'ts']);
  });

  it('a redaction of a seq not loaded changes nothing (history brings the placeholder)', () => {
    const before = run(loaded, recv(msg(1)));
    expect(reduce(before, { type: 'message.redacted', conversation_id: DM, seq: 5, reason: 'x' })).toBe(before);
    expect(reduce(before, { type: 'message.redacted', conversation_id: 'dm:alice:carol', seq: 1, reason: 'x' })).toBe(before);
  });

  it('placeholders from history or sync keep their reason', () => {
    const s = run(loaded, { type: 'history.loaded', conversation_id: DM, messages: [msg(1, { body: '', redacted: { reason: 'spam' } })], complete: true });
    expect(s.messages[DM][0].redacted).toEqual({ reason: 'spam' });
    expect(bubbles(s, DM)[0].redacted).toEqual({ reason: 'spam' });
  });

  it('a restore gives the message back', () => {
    const s = run(
      loaded,
      recv(msg(1), msg(2)),
      { type: 'message.redacted', conversation_id: DM, seq: 1, reason: 'offensive' },
      { type: 'message.restored', message: msg(1) },
    );
    expect(s.messages[DM][0]).toEqual(msg(1));
    expect(bubbles(s, DM)[0].redacted).toBeUndefined();
    // A malformed restore is ignored.
    expect(reduce(s, { type: 'message.restored', message: { ...msg(1), seq: -1 } })).toBe(s);
  });

  it('a fresh history page hides and restores loaded messages, and adds nothing', () => {
    const before = run(loaded, recv(msg(1), msg(2), msg(3, { body: '', redacted: { reason: 'spam' } })));
    const s = reduce(before, {
      type: 'moderation.reconciled',
      conversation_id: DM,
      messages: [msg(1), msg(2, { body: '', redacted: { reason: 'offensive' } }), msg(3), msg(4)],
    });
    expect(s.messages[DM].map((m) => m.redacted?.reason ?? m.body)).toEqual(['m1', 'offensive', 'm3']);
    expect(s.messages[DM][0]).toBe(before.messages[DM][0]);
    expect(s.cursors).toEqual(before.cursors);
    // Already in that state: nothing changes.
    expect(reduce(s, { type: 'moderation.reconciled', conversation_id: DM, messages: [msg(1), msg(2, { body: '', redacted: { reason: 'offensive' } })] })).toBe(s);
  });

  it('the placeholder text says it was moderation, with the reason when there is one', () => {
    expect(redactedText('offensive')).toBe('Message removed by moderation (offensive)');
    expect(redactedText('')).toBe('Message removed by moderation');
  });
});

describe('blocked sends', () => {
  const pending: Action = { type: 'message.pending', conversation_id: DM, client_msg_id: 'k1', body: 'buy spam', now: 5 };

  it('a blocked send fails with its code, and a retry clears it', () => {
    const s = run(loaded, pending, { type: 'message.failed', client_msg_id: 'k1', error: blockedText('blocked_term'), code: 'blocked' });
    const [b] = bubbles(s, DM);
    expect(b.status).toBe('failed');
    expect(b.code).toBe('blocked');
    expect(b.error).toBe('Blocked by moderation: it contains a word the rules block');
    const retried = reduce(s, { type: 'message.retry', client_msg_id: 'k1' });
    expect(retried.pending.k1.code).toBeUndefined();
    expect(retried.pending.k1.error).toBeUndefined();
  });

  it('names every rule, and passes an unknown one through', () => {
    expect(blockedText('muted')).toBe('Blocked by moderation: you are muted for now');
    expect(blockedText('banned')).toContain('banned');
    expect(blockedText('blocked_domain')).toContain('blocked site');
    expect(blockedText('new_account_links')).toContain('links');
    expect(blockedText('some_new_rule')).toBe('Blocked by moderation: some_new_rule');
    expect(blockedText(undefined)).toBe('Blocked by moderation');
  });
});

describe('report frames', () => {
  it('builds message.report, leaving out an empty note', () => {
    expect(frames.report(DM, 7, 'spam', '', 'r1')).toEqual({ type: 'message.report', conversation_id: DM, seq: 7, reason: 'spam', id: 'r1' });
    expect(frames.report(DM, 7, 'other', 'see link', 'r2')).toMatchObject({ note: 'see link' });
  });

  it('checks the protocol limits before sending', () => {
    expect(reportError('spam', '')).toBeNull();
    expect(reportError('  ', '')).toBe('Pick a reason');
    expect(reportError('x'.repeat(65), '')).toMatch(/at most 64/);
    expect(reportError('spam', '😀'.repeat(1000))).toBeNull(); // code points, as the server counts
    expect(reportError('spam', 'x'.repeat(1001))).toMatch(/at most 1000/);
  });

  it('decodes the moderation server frames', () => {
    expect(decodeFrame(JSON.stringify({ type: 'message.redacted', conversation_id: DM, seq: 3, reason: 'spam' }))).toMatchObject({ seq: 3 });
    expect(decodeFrame(JSON.stringify({ type: 'message.restored', conversation_id: DM, seq: 3, message: msg(3) }))).not.toBeNull();
  });
});

describe('the moderator role', () => {
  const token = (payload: object) => `e30.${btoa(JSON.stringify(payload)).replace(/=+$/, '')}.sig`;

  it('reads roles from the token payload (display only)', () => {
    expect(rolesOf({ roles: ['moderator', 7, 'x'] })).toEqual(['moderator', 'x']);
    expect(rolesOf({ roles: 'moderator' })).toEqual([]);
    expect(rolesOf(null)).toEqual([]);
    const mod = sessionFromToken(token({ sub: 'mod', roles: ['moderator'] }));
    const user = sessionFromToken(token({ sub: 'bob' }));
    if ('error' in mod || 'error' in user) throw new Error('tokens should parse');
    expect(isModerator(mod)).toBe(true);
    expect(isModerator(user)).toBe(false);
  });
});

const ENTRY = {
  id: `${DM}:2`,
  conversation_id: DM,
  seq: 2,
  status: 'open',
  sender: 'bob',
  entries: [
    { kind: 'flagged', reason: 'offensive', source: 'classifier', by: null, evidence: { score: 0.97 }, at: 20 },
    { kind: 'reported', reason: 'spam', source: 'report', by: 'alice', evidence: { note: 'again' }, at: 10 },
  ],
  message: msg(2),
};

describe('the moderators queue', () => {
  it('parses the REST answer, skipping malformed entries, events oldest first', () => {
    const items = parseQueue({ queue: [ENTRY, { nope: 1 }, { conversation_id: DM, seq: 3, entries: 'x', message: null }] });
    expect(items).toHaveLength(2);
    expect(items[0].entries.map((e) => e.kind)).toEqual(['reported', 'flagged']);
    expect(items[0].message?.body).toBe('m2');
    expect(items[1]).toEqual({ id: `${DM}:3`, conversation_id: DM, seq: 3, status: '', sender: null, entries: [], message: null });
    expect(parseQueue(null)).toEqual([]);
    expect(parseQueue({ queue: 'x' })).toEqual([]);
  });

  it('describes each event with who, why and the evidence', () => {
    const [item] = parseQueue({ queue: [ENTRY] });
    expect(item.entries.map(describeEvent)).toEqual([
      'reported by alice “spam” (note: again)',
      'flagged by classifier “offensive” (score: 0.97)',
    ]);
    expect(describeEvent({ kind: 'redacted', reason: '', source: 'moderator', by: 'mod', evidence: {}, at: 1 })).toBe('redacted by mod');
  });

  it('suggests the latest flag or report reason for an action, never a moderator\'s', () => {
    const [item] = parseQueue({ queue: [ENTRY] });
    expect(suggestedReason(item)).toBe('offensive');
    const acted = { ...item, entries: [...item.entries, { kind: 'restored', reason: 'fine', source: 'moderator', by: 'm', evidence: {}, at: 30 }] };
    expect(suggestedReason(acted)).toBe('offensive');
    expect(suggestedReason({ ...item, entries: [] })).toBe('');
  });

  const items: QueueItem[] = parseQueue({ queue: [ENTRY] });
  const runMod = (...actions: ModerationAction[]): ModerationState => actions.reduce(reduceModeration, initialModeration());

  it('shows the loaded tab and ignores an answer for a tab no longer shown', () => {
    let s = runMod({ type: 'load.start' }, { type: 'load.done', status: 'open', items });
    expect(s).toMatchObject({ status: 'open', loading: false, items });
    s = reduceModeration(s, { type: 'view', status: 'resolved' });
    expect(s).toMatchObject({ status: 'resolved', loading: true, items: [] });
    expect(reduceModeration(s, { type: 'load.done', status: 'open', items })).toBe(s);
    expect(reduceModeration(s, { type: 'load.failed', status: 'open', error: 'x' })).toBe(s);
    s = reduceModeration(s, { type: 'load.failed', status: 'resolved', error: 'Not allowed' });
    expect(s).toMatchObject({ loading: false, error: 'Not allowed' });
    expect(reduceModeration(s, { type: 'view', status: 'resolved' })).toBe(s);
  });

  it('tracks each action from start to its outcome', () => {
    let s = runMod({ type: 'load.done', status: 'open', items }, { type: 'act.failed', key: 'item:a', error: 'old' });
    s = reduceModeration(s, { type: 'act.start', key: 'item:a', action: 'redact' });
    expect(s.busy).toEqual({ 'item:a': 'redact' });
    expect(s.outcome).toEqual({});
    s = reduceModeration(s, { type: 'act.done', key: 'item:a', text: 'Redacted' });
    expect(s.busy).toEqual({});
    expect(s.outcome['item:a']).toEqual({ ok: true, text: 'Redacted' });
    s = reduceModeration(s, { type: 'act.start', key: 'user:bob', action: 'mute' });
    s = reduceModeration(s, { type: 'act.failed', key: 'user:bob', error: 'The server rejected the request' });
    expect(s.outcome['user:bob']).toEqual({ ok: false, text: 'The server rejected the request' });
    expect(s.outcome['item:a'].ok).toBe(true);
  });
});
