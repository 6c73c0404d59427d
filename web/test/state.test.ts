import { describe, expect, it } from 'vitest';
import {
  ackedStatus,
  bubbles,
  conversationList,
  conversationTitle,
  historyBefore,
  initialCursor,
  initialState,
  reduce,
  syncCursors,
  typingUsers,
  unreadCount,
  type Action,
  type ChatState,
  type Conversation,
  type Message,
} from '../src/protocol';

const ME = 'alice';
const DM = 'dm:alice:bob';
const GRP = 'grp:0123456789abcdef0123456789abcdef';

function conv(over: Partial<Conversation> = {}): Conversation {
  return { id: DM, kind: 'direct', title: null, members: ['alice', 'bob'], admins: [], last_seq: 0, read_seq: 0, ...over };
}

function msg(seq: number, over: Partial<Message> = {}): Message {
  return { conversation_id: DM, seq, sender: 'bob', body: `m${seq}`, ts: 1000 + seq, client_msg_id: `c${seq}`, ...over };
}

function run(...actions: Action[]): ChatState {
  return actions.reduce(reduce, initialState(ME));
}

const loaded = (...c: Conversation[]): Action => ({ type: 'conversations.loaded', conversations: c, now: 1 });
const recv = (...m: Message[]): Action => ({ type: 'messages.received', messages: m });

describe('messages', () => {
  it('deduplicates by (conversation_id, seq) and keeps them sorted', () => {
    const s = run(loaded(conv()), recv(msg(3), msg(1)), recv(msg(2), msg(3), msg(1)), recv(msg(2, { body: 'dup' })));
    expect(s.messages[DM].map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(s.messages[DM][1].body).toBe('m2');
  });

  it('keeps conversations apart', () => {
    const s = run(
      loaded(conv(), conv({ id: GRP, kind: 'group', title: 'G', members: ['alice', 'bob', 'carol'] })),
      recv(msg(1), msg(1, { conversation_id: GRP, body: 'g1' })),
    );
    expect(s.messages[DM].map((m) => m.body)).toEqual(['m1']);
    expect(s.messages[GRP].map((m) => m.body)).toEqual(['g1']);
  });

  it('returns the same state for a pure duplicate', () => {
    const s1 = run(loaded(conv()), recv(msg(1)));
    expect(reduce(s1, recv(msg(1))).messages).toBe(s1.messages);
  });

  it('updates last_seq from received messages', () => {
    const s = run(loaded(conv({ last_seq: 2 })), recv(msg(5)));
    expect(s.conversations[DM].last_seq).toBe(5);
  });

  it('history pages prepend and mark the beginning', () => {
    let s = run(loaded(conv({ last_seq: 120, read_seq: 120 })));
    s = reduce(s, recv(msg(120)));
    expect(historyBefore(s, DM)).toBe(120);
    s = reduce(s, { type: 'history.loaded', conversation_id: DM, messages: [70, 71, 119].map((n) => msg(n)), complete: false });
    expect(s.messages[DM][0].seq).toBe(70);
    expect(historyBefore(s, DM)).toBe(70);
    s = reduce(s, { type: 'history.loaded', conversation_id: DM, messages: [1, 2].map((n) => msg(n)), complete: false });
    expect(historyBefore(s, DM)).toBeNull();
  });
});

describe('optimistic sends', () => {
  const pending = (id: string, body = 'hi', now = 50): Action => ({
    type: 'message.pending',
    conversation_id: DM,
    client_msg_id: id,
    body,
    now,
  });

  it('shows a pending bubble until the ack, then an acknowledged one', () => {
    let s = run(loaded(conv()), pending('x1'));
    let b = bubbles(s, DM);
    expect(b).toHaveLength(1);
    expect(b[0]).toMatchObject({ seq: null, status: 'pending', mine: true, body: 'hi' });
    s = reduce(s, { type: 'message.acked', conversation_id: DM, client_msg_id: 'x1', seq: 1, ts: 999 });
    b = bubbles(s, DM);
    expect(b).toHaveLength(1);
    expect(b[0]).toMatchObject({ seq: 1, status: 'sent', sender: ME, ts: 999, client_msg_id: 'x1' });
    expect(s.pending).toEqual({});
  });

  it('a duplicate ack (resend after reconnect) does not duplicate the message', () => {
    let s = run(loaded(conv()), pending('x1'));
    const ack: Action = { type: 'message.acked', conversation_id: DM, client_msg_id: 'x1', seq: 1, ts: 9 };
    s = reduce(reduce(s, ack), ack);
    expect(s.messages[DM]).toHaveLength(1);
  });

  it('the same client_msg_id arriving as a message (another device / replay) resolves the pending one', () => {
    let s = run(loaded(conv()), pending('x1'));
    s = reduce(s, recv(msg(1, { sender: ME, client_msg_id: 'x1', body: 'hi' })));
    expect(s.pending).toEqual({});
    expect(bubbles(s, DM).map((b) => [b.seq, b.body])).toEqual([[1, 'hi']]);
    // The late ack is harmless.
    s = reduce(s, { type: 'message.acked', conversation_id: DM, client_msg_id: 'x1', seq: 1, ts: 9 });
    expect(bubbles(s, DM)).toHaveLength(1);
  });

  it('a message from someone else with the same client_msg_id does not resolve mine', () => {
    const s = run(loaded(conv()), pending('x1'), recv(msg(1, { sender: 'bob', client_msg_id: 'x1' })));
    expect(Object.keys(s.pending)).toEqual(['x1']);
  });

  it('failed sends can be retried and discarded', () => {
    let s = run(loaded(conv()), pending('x1'), { type: 'message.failed', client_msg_id: 'x1', error: 'forbidden' });
    expect(bubbles(s, DM)[0]).toMatchObject({ status: 'failed', error: 'forbidden' });
    s = reduce(s, { type: 'message.retry', client_msg_id: 'x1' });
    expect(bubbles(s, DM)[0].status).toBe('pending');
    expect(bubbles(s, DM)[0].error).toBeUndefined();
    s = reduce(s, { type: 'message.discard', client_msg_id: 'x1' });
    expect(bubbles(s, DM)).toHaveLength(0);
  });

  it('pending bubbles follow acknowledged ones in send order', () => {
    const s = run(loaded(conv()), recv(msg(1)), pending('b', 'second', 60), pending('a', 'first', 55));
    expect(bubbles(s, DM).map((b) => b.body)).toEqual(['m1', 'first', 'second']);
  });

  it('restores persisted pending messages without overwriting live ones', () => {
    const s = run(loaded(conv()), pending('x1', 'live'), {
      type: 'pending.restore',
      pending: [
        { conversation_id: DM, client_msg_id: 'x1', body: 'stale', created: 1, status: 'pending' },
        { conversation_id: DM, client_msg_id: 'x2', body: 'saved', created: 2, status: 'pending' },
      ],
    });
    expect(s.pending.x1.body).toBe('live');
    expect(s.pending.x2.body).toBe('saved');
  });
});

describe('receipts and ticks', () => {
  const receipt = (user: string, kind: 'read' | 'delivered', seq: number, c = DM): Action => ({
    type: 'receipt',
    conversation_id: c,
    user,
    kind,
    seq,
  });

  it('are cumulative maxima per user and kind', () => {
    const s = run(loaded(conv()), receipt('bob', 'delivered', 5), receipt('bob', 'delivered', 3), receipt('bob', 'read', 2), receipt('bob', 'read', 1));
    expect(s.receipts[DM].bob).toEqual({ delivered: 5, read: 2 });
  });

  it('read implies delivered', () => {
    const s = run(loaded(conv()), receipt('bob', 'read', 4));
    expect(s.receipts[DM].bob).toEqual({ delivered: 4, read: 4 });
  });

  it('REST receipts merge monotonically', () => {
    const s = run(loaded(conv()), receipt('bob', 'delivered', 9), {
      type: 'receipts.loaded',
      conversation_id: DM,
      receipts: { bob: { read: 3, delivered: 4 }, alice: { read: 7, delivered: 7 } },
    });
    expect(s.receipts[DM].bob).toEqual({ delivered: 9, read: 3 });
    expect(s.conversations[DM].read_seq).toBe(7);
  });

  it('ticks: sent → delivered (all others) → read (all others)', () => {
    const g = conv({ id: GRP, kind: 'group', title: 'G', members: ['alice', 'bob', 'carol'] });
    let s = run(loaded(g), recv(msg(1, { conversation_id: GRP, sender: ME })));
    expect(ackedStatus(s, GRP, 1)).toBe('sent');
    s = reduce(s, receipt('bob', 'delivered', 1, GRP));
    expect(ackedStatus(s, GRP, 1)).toBe('sent');
    s = reduce(s, receipt('carol', 'delivered', 3, GRP));
    expect(ackedStatus(s, GRP, 1)).toBe('delivered');
    s = reduce(s, receipt('bob', 'read', 1, GRP));
    expect(ackedStatus(s, GRP, 1)).toBe('delivered');
    s = reduce(s, receipt('carol', 'read', 1, GRP));
    expect(ackedStatus(s, GRP, 1)).toBe('read');
    expect(bubbles(s, GRP)[0].status).toBe('read');
  });

  it('my own receipts from another device move my read cursor', () => {
    const s = run(loaded(conv({ last_seq: 5 })), receipt(ME, 'read', 4));
    expect(unreadCount(s, DM)).toBe(1);
  });
});

describe('typing', () => {
  const typing = (user: string, state: 'start' | 'stop', now: number): Action => ({
    type: 'typing',
    conversation_id: DM,
    user,
    state,
    now,
  });

  it('start shows, stop hides', () => {
    let s = run(loaded(conv()), typing('bob', 'start', 1000));
    expect(typingUsers(s, DM, 1000)).toEqual(['bob']);
    s = reduce(s, typing('bob', 'stop', 1500));
    expect(typingUsers(s, DM, 1500)).toEqual([]);
  });

  it('expires 6 s after the last start', () => {
    let s = run(loaded(conv()), typing('bob', 'start', 1000));
    expect(typingUsers(s, DM, 6999)).toEqual(['bob']);
    expect(typingUsers(s, DM, 7000)).toEqual([]);
    s = reduce(s, typing('bob', 'start', 4000)); // refreshed
    expect(typingUsers(s, DM, 9999)).toEqual(['bob']);
    s = reduce(s, { type: 'typing.expire', now: 10_000 });
    expect(s.typing).toEqual({});
  });

  it('a message from the typist ends it', () => {
    const s = run(loaded(conv()), typing('bob', 'start', 1000), recv(msg(1)));
    expect(typingUsers(s, DM, 1001)).toEqual([]);
  });

  it('ignores my own typing', () => {
    const s = run(loaded(conv()), typing(ME, 'start', 1000));
    expect(typingUsers(s, DM, 1000)).toEqual([]);
  });
});

describe('cursors and sync', () => {
  it('the cursor is the highest contiguous seq seen', () => {
    let s = run(loaded(conv()));
    expect(syncCursors(s)).toEqual({ [DM]: 0 });
    s = reduce(s, recv(msg(1), msg(2), msg(4)));
    expect(s.cursors[DM]).toBe(2);
    s = reduce(s, recv(msg(3)));
    expect(s.cursors[DM]).toBe(4);
  });

  it('an ack advances the cursor too', () => {
    const s = run(
      loaded(conv()),
      recv(msg(1)),
      { type: 'message.pending', conversation_id: DM, client_msg_id: 'x', body: 'b', now: 1 },
      { type: 'message.acked', conversation_id: DM, client_msg_id: 'x', seq: 2, ts: 2 },
    );
    expect(syncCursors(s)).toEqual({ [DM]: 2 });
  });

  it('first-seen conversations start just below the read cursor, within a window', () => {
    expect(initialCursor(0, 0)).toBe(0);
    expect(initialCursor(10, 0)).toBe(0);
    expect(initialCursor(10, 7)).toBe(7);
    expect(initialCursor(10, 10)).toBe(9); // one message back for the preview
    expect(initialCursor(1000, 0)).toBe(950);
    const s = run(loaded(conv({ last_seq: 10, read_seq: 7 }), conv({ id: GRP, kind: 'group', last_seq: 0 })));
    expect(syncCursors(s)).toEqual({ [DM]: 7, [GRP]: 0 });
  });

  it('reloading the list keeps existing cursors and conversations (the read side may lag)', () => {
    let s = run(loaded(conv({ last_seq: 3 }), conv({ id: GRP, kind: 'group' })), recv(msg(1), msg(2), msg(3)));
    s = reduce(s, loaded(conv({ last_seq: 5 })));
    expect(syncCursors(s)).toEqual({ [DM]: 3, [GRP]: 0 });
    expect(s.conversations[DM].last_seq).toBe(5);
    expect(s.conversations[GRP]).toBeDefined();
    s = reduce(s, { type: 'conversation.remove', conversation_id: GRP });
    expect(s.conversations[GRP]).toBeUndefined();
    expect(s.cursors[GRP]).toBeUndefined();
  });

  it('sync.done raises last_seq', () => {
    const s = run(loaded(conv({ last_seq: 3, read_seq: 3 })), { type: 'sync.done', conversations: { [DM]: 8 } });
    expect(s.conversations[DM].last_seq).toBe(8);
    expect(unreadCount(s, DM)).toBe(5);
  });
});

describe('conversations', () => {
  it('unread = last_seq − my read_seq', () => {
    let s = run(loaded(conv({ last_seq: 10, read_seq: 4 })));
    expect(unreadCount(s, DM)).toBe(6);
    s = reduce(s, recv(msg(11)));
    expect(unreadCount(s, DM)).toBe(7);
    s = reduce(s, { type: 'read.local', conversation_id: DM, seq: 11 });
    expect(unreadCount(s, DM)).toBe(0);
    s = reduce(s, { type: 'read.local', conversation_id: DM, seq: 2 });
    expect(unreadCount(s, DM)).toBe(0);
  });

  it('titles: group title, or the other member of a direct chat', () => {
    const s = run(loaded(conv()));
    expect(conversationTitle(s, conv())).toBe('bob');
    expect(conversationTitle(s, conv({ id: 'dm:alice:zed', members: [] }))).toBe('zed');
    expect(conversationTitle(s, conv({ id: GRP, kind: 'group', title: 'Team' }))).toBe('Team');
  });

  it('being removed drops the conversation', () => {
    let s = run(loaded(conv({ id: GRP, kind: 'group', members: ['alice', 'bob'] })), recv(msg(1, { conversation_id: GRP })));
    s = reduce(s, {
      type: 'conversation.upsert',
      event: 'members_removed',
      conversation: conv({ id: GRP, kind: 'group', members: ['bob'] }),
      now: 5,
    });
    expect(s.conversations[GRP]).toBeUndefined();
    expect(s.messages[GRP]).toBeUndefined();
    expect(s.cursors[GRP]).toBeUndefined();
  });

  it('list is ordered by activity, with previews and unread counts', () => {
    let s = run(loaded(conv({ last_seq: 1 }), conv({ id: GRP, kind: 'group', title: 'G', last_seq: 0 })));
    s = reduce(s, recv(msg(1, { ts: 5000 })));
    s = reduce(s, { type: 'conversation.upsert', event: 'members_added', conversation: conv({ id: GRP, kind: 'group', title: 'G' }), now: 9 });
    s = reduce(s, recv(msg(1, { conversation_id: GRP, ts: 6000, body: 'hello group' })));
    const list = conversationList(s);
    expect(list.map((i) => i.id)).toEqual([GRP, DM]);
    expect(list[0]).toMatchObject({ title: 'G', preview: 'hello group', unread: 1 });
    expect(list[1]).toMatchObject({ title: 'bob', peer: 'bob', preview: 'm1' });
  });

  it('presence keeps last_seen when a frame omits it', () => {
    let s = run({ type: 'presence', entries: [{ user: 'bob', status: 'offline', last_seen: 77 }] });
    s = reduce(s, { type: 'presence', entries: [{ user: 'bob', status: 'online' }] });
    expect(s.presence.bob).toEqual({ status: 'online', last_seen: 77 });
  });
});
