import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Api } from '../src/api';
import { ApiError } from '../src/api';
import { backoffDelay, BACKOFF_CAP_MS, Connection, MODERATION_CHECK_PAGE, wsUrl } from '../src/connection';
import { createStore, type Conversation, type Message, type Store } from '../src/protocol';

class FakeWS {
  static instances: FakeWS[] = [];
  sent: Record<string, unknown>[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((ev: { data: string }) => void) | null = null;
  onclose: ((ev: { code: number }) => void) | null = null;
  onerror: (() => void) | null = null;
  closed = false;
  constructor(readonly url: string) {
    FakeWS.instances.push(this);
  }
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.closed = true;
  }
  open() {
    this.onopen?.();
  }
  recv(frame: object) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  drop(code = 1006) {
    this.onclose?.({ code });
  }
  ofType(t: string) {
    return this.sent.filter((f) => f.type === t);
  }
}

const DM = 'dm:alice:bob';
const CONV: Conversation = { id: DM, kind: 'direct', title: null, members: ['alice', 'bob'], admins: [], last_seq: 2, read_seq: 2 };

function fakeApi(over: Partial<Api> = {}): Api {
  return {
    conversations: vi.fn(async () => [CONV]),
    wsTicket: vi.fn(async () => 'T1'),
    messages: vi.fn(async () => []),
    receipts: vi.fn(async () => ({})),
    ...over,
  };
}

let store: Store;
let conn: Connection;
const latest = () => FakeWS.instances[FakeWS.instances.length - 1];

async function started(api = fakeApi(), onAuthFailure?: (r: string) => void) {
  store = createStore('alice');
  conn = new Connection({ token: 'tok', store, api, origins: ['http://127.0.0.1:8080', 'http://127.0.0.1:8081'], onAuthFailure });
  conn.start();
  await vi.advanceTimersByTimeAsync(0);
  return api;
}

beforeEach(() => {
  vi.useFakeTimers();
  FakeWS.instances = [];
  vi.stubGlobal('WebSocket', FakeWS);
});
afterEach(() => {
  conn?.stop();
  vi.unstubAllGlobals();
  vi.useRealTimers();
});

describe('connection', () => {
  it('builds the ws URL from an http origin', () => {
    expect(wsUrl('http://127.0.0.1:8080', { token: 'a.b c' })).toBe('ws://127.0.0.1:8080/v1/ws?access_token=a.b+c');
    expect(wsUrl('https://chat.example', { token: 't' })).toBe('wss://chat.example/v1/ws?access_token=t');
    expect(wsUrl('https://chat.example', { ticket: 'x-_y' })).toBe('wss://chat.example/v1/ws?ticket=x-_y');
  });

  it('connects with a one-time ticket, never with the token in the URL', async () => {
    let n = 0;
    const api = await started(fakeApi({ wsTicket: vi.fn(async () => `T${++n}`) }));
    let ws = latest();
    expect(ws.url).toBe('ws://127.0.0.1:8080/v1/ws?ticket=T1');
    expect(ws.url).not.toContain('tok');
    ws.open();
    ws.drop(1006);
    await vi.advanceTimersByTimeAsync(BACKOFF_CAP_MS);
    ws = latest();
    // A fresh ticket for every connection (each is good once).
    expect(ws.url).toBe('ws://127.0.0.1:8081/v1/ws?ticket=T2');
    expect(api.wsTicket).toHaveBeenCalledTimes(2);
  });

  it('falls back to the token when the server cannot issue tickets (503, 404)', async () => {
    for (const status of [503, 404]) {
      FakeWS.instances = [];
      await started(fakeApi({ wsTicket: vi.fn(async () => Promise.reject(new ApiError(status, 'unavailable', 'x'))) }));
      expect(latest().url).toBe('ws://127.0.0.1:8080/v1/ws?access_token=tok');
      conn.stop();
    }
  });

  it('a refused ticket request (401) signs out; a network error retries later without a socket', async () => {
    const onAuthFailure = vi.fn();
    await started(fakeApi({ wsTicket: vi.fn(async () => Promise.reject(new ApiError(401, 'unauthorized', 'x'))) }), onAuthFailure);
    expect(FakeWS.instances).toHaveLength(0);
    expect(onAuthFailure).toHaveBeenCalledWith('unauthorized');
    conn.stop();
    let calls = 0;
    await started(
      fakeApi({
        wsTicket: vi.fn(async () => {
          calls++;
          if (calls === 1) throw new ApiError(0, 'network', 'offline');
          return 'T9';
        }),
      }),
    );
    expect(FakeWS.instances).toHaveLength(0);
    expect(conn.status).toBe('reconnecting');
    await vi.advanceTimersByTimeAsync(BACKOFF_CAP_MS);
    expect(latest().url).toBe('ws://127.0.0.1:8081/v1/ws?ticket=T9');
  });

  it('a rate-limited presence.subscribe is sent again after retry_after_ms', async () => {
    await started();
    const ws = latest();
    ws.open();
    const [first] = ws.ofType('presence.subscribe');
    ws.recv({ type: 'error', id: first.id, code: 'rate_limited', message: 'slow down', retry_after_ms: 500 });
    await vi.advanceTimersByTimeAsync(400);
    expect(ws.ofType('presence.subscribe')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(200);
    const again = ws.ofType('presence.subscribe');
    expect(again).toHaveLength(2);
    expect(again[1].users).toEqual(['bob']);
  });

  it('backoff grows exponentially with jitter and is capped', () => {
    expect(backoffDelay(0, () => 0)).toBe(250);
    expect(backoffDelay(0, () => 1)).toBe(500);
    expect(backoffDelay(3, () => 1)).toBe(4000);
    expect(backoffDelay(30, () => 1)).toBe(BACKOFF_CAP_MS);
    expect(backoffDelay(30, () => 0)).toBe(BACKOFF_CAP_MS / 2);
  });

  it('on open: sync with cursors, presence.subscribe for known users', async () => {
    await started();
    const ws = latest();
    expect(ws.url).toBe('ws://127.0.0.1:8080/v1/ws?ticket=T1');
    ws.open();
    expect(conn.status).toBe('open');
    const [sync] = ws.ofType('sync');
    expect(sync.cursors).toEqual({ [DM]: 1 }); // read up to 2: fetch the last one again for the preview
    expect(ws.ofType('presence.subscribe')[0].users).toEqual(['bob']);
    ws.recv({ type: 'ok', id: ws.ofType('presence.subscribe')[0].id, presence: [{ user: 'bob', status: 'online', last_seen: 5 }] });
    expect(store.getState().presence.bob.status).toBe('online');
  });

  it('re-sends unacked messages with the same client_msg_id after a reconnect, on the other edge', async () => {
    await started();
    let ws = latest();
    ws.open();
    ws.recv({ type: 'sync.done', id: ws.ofType('sync')[0].id, conversations: { [DM]: 2 }, truncated: false });
    const cmid = conn.sendMessage(DM, 'hello');
    expect(ws.ofType('message.send')).toEqual([expect.objectContaining({ client_msg_id: cmid, body: 'hello', conversation_id: DM })]);
    ws.drop(1001);
    expect(conn.status).toBe('reconnecting');
    await vi.advanceTimersByTimeAsync(BACKOFF_CAP_MS);
    ws = latest();
    expect(ws.url.startsWith('ws://127.0.0.1:8081/')).toBe(true);
    ws.open();
    const resent = ws.ofType('message.send');
    expect(resent).toHaveLength(1);
    expect(resent[0].client_msg_id).toBe(cmid);
    ws.recv({ type: 'message.ack', id: resent[0].id, conversation_id: DM, client_msg_id: cmid, seq: 3, ts: 42 });
    expect(store.getState().pending).toEqual({});
    expect(store.getState().messages[DM].map((m) => m.seq)).toEqual([3]);
  });

  it('sends message.delivered (throttled, cumulative) and receipt.read for the open conversation', async () => {
    await started();
    const ws = latest();
    ws.open();
    for (const seq of [2, 3, 4]) {
      ws.recv({ type: 'message', conversation_id: DM, seq, sender: 'bob', body: `m${seq}`, ts: seq, client_msg_id: `k${seq}` });
    }
    ws.recv({ type: 'sync.done', id: ws.ofType('sync')[0].id, conversations: { [DM]: 4 }, truncated: false });
    await vi.advanceTimersByTimeAsync(1000);
    expect(ws.ofType('message.delivered')).toEqual([{ type: 'message.delivered', conversation_id: DM, seq: 4 }]);
    expect(ws.ofType('receipt.read')).toEqual([]);
    conn.setView(DM, true);
    await vi.advanceTimersByTimeAsync(1000);
    expect(ws.ofType('receipt.read')).toEqual([{ type: 'receipt.read', conversation_id: DM, seq: 4 }]);
  });

  it('typing start at most every 3 s, stop on send', async () => {
    await started();
    const ws = latest();
    ws.open();
    conn.typing(DM, 'h');
    conn.typing(DM, 'he');
    await vi.advanceTimersByTimeAsync(1000);
    conn.typing(DM, 'hel');
    expect(ws.ofType('typing')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2000);
    conn.typing(DM, 'hell');
    expect(ws.ofType('typing').map((f) => f.state)).toEqual(['start', 'start']);
    conn.sendMessage(DM, 'hello');
    expect(ws.ofType('typing').map((f) => f.state)).toEqual(['start', 'start', 'stop']);
    conn.typing(DM, '');
    expect(ws.ofType('typing')).toHaveLength(3);
  });

  it('pings every 20 s and reconnects when no pong comes', async () => {
    await started();
    const ws = latest();
    ws.open();
    await vi.advanceTimersByTimeAsync(20_000);
    const [ping] = ws.ofType('ping');
    expect(ping).toBeDefined();
    ws.recv({ type: 'pong', id: ping.id });
    await vi.advanceTimersByTimeAsync(20_000);
    expect(ws.ofType('ping')).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(ws.closed).toBe(true);
    expect(conn.status).toBe('reconnecting');
  });

  it('marks a send failed on a non-retryable error, retries on rate_limited', async () => {
    await started();
    const ws = latest();
    ws.open();
    const a = conn.sendMessage(DM, 'a');
    const fa = ws.ofType('message.send')[0];
    ws.recv({ type: 'error', id: fa.id, code: 'rate_limited', message: 'slow down', retry_after_ms: 500 });
    expect(store.getState().pending[a].status).toBe('pending');
    await vi.advanceTimersByTimeAsync(500);
    const again = ws.ofType('message.send');
    expect(again).toHaveLength(2);
    expect(again[1].client_msg_id).toBe(a);
    ws.recv({ type: 'error', id: again[1].id, code: 'not_member', message: 'no' });
    expect(store.getState().pending[a].status).toBe('failed');
    conn.retry(a);
    expect(ws.ofType('message.send')).toHaveLength(3);
    expect(store.getState().pending[a].status).toBe('pending');
  });

  it('close 4003 (token expired) stops and reports', async () => {
    const onAuth = vi.fn();
    await started(fakeApi(), onAuth);
    latest().open();
    latest().drop(4003);
    expect(onAuth).toHaveBeenCalledWith('expired');
    expect(conn.status).toBe('unauthorized');
    await vi.advanceTimersByTimeAsync(20_000);
    expect(FakeWS.instances).toHaveLength(1);
  });

  it('a refused upgrade with a rejected token reports unauthorized', async () => {
    const onAuth = vi.fn();
    const conversations = vi.fn().mockResolvedValueOnce([CONV]).mockRejectedValue(new ApiError(401, 'unauthorized', 'x'));
    await started(fakeApi({ conversations }), onAuth);
    latest().drop(1006);
    await vi.advanceTimersByTimeAsync(0);
    expect(onAuth).toHaveBeenCalledWith('unauthorized');
  });

  it('fills a gap after sync.done via REST after=cursor', async () => {
    const messages = vi.fn(async (_id: string, q: { after?: number }) =>
      q.after === 1 ? [2, 3, 4, 5].map((seq) => ({ conversation_id: DM, seq, sender: 'bob', body: 'x', ts: 1, client_msg_id: null })) : [],
    );
    await started(fakeApi({ messages }));
    const ws = latest();
    ws.open();
    ws.recv({ type: 'sync.done', id: ws.ofType('sync')[0].id, conversations: { [DM]: 5 }, truncated: true });
    await vi.advanceTimersByTimeAsync(0);
    expect(messages).toHaveBeenCalledWith(DM, { after: 1, limit: 200 });
    expect(store.getState().cursors[DM]).toBe(5);
  });

  it('connects even when the conversation list is unavailable, and fetches it later', async () => {
    const conversations = vi.fn().mockRejectedValueOnce(new ApiError(503, 'unavailable', 'x')).mockResolvedValue([CONV]);
    await started(fakeApi({ conversations }));
    const ws = latest();
    ws.open();
    expect(ws.ofType('sync')[0]).not.toHaveProperty('cursors');
    ws.recv({ type: 'sync.done', id: ws.ofType('sync')[0].id, conversations: { [DM]: 2 }, truncated: false });
    await vi.advanceTimersByTimeAsync(0);
    expect(conversations).toHaveBeenCalledTimes(2);
    expect(store.getState().conversations[DM]).toBeDefined();
  });

  it('drops a conversation missing from sync.done only when REST says 404', async () => {
    const receipts = vi.fn().mockRejectedValue(new ApiError(404, 'not_found', 'x'));
    await started(fakeApi({ receipts }));
    const ws = latest();
    ws.open();
    ws.recv({ type: 'sync.done', id: ws.ofType('sync')[0].id, conversations: {}, truncated: false });
    await vi.advanceTimersByTimeAsync(0);
    expect(receipts).toHaveBeenCalledWith(DM);
    expect(store.getState().conversations[DM]).toBeUndefined();
  });
});

describe('moderation over the socket', () => {
  async function synced() {
    await started();
    const ws = latest();
    ws.open();
    ws.recv({ type: 'message', conversation_id: DM, seq: 3, sender: 'bob', body: 'rude', ts: 3, client_msg_id: 'k3' });
    ws.recv({ type: 'sync.done', id: ws.ofType('sync')[0].id, conversations: { [DM]: 3 }, truncated: false });
    return ws;
  }

  it('message.redacted hides the shown message; message.restored gives it back', async () => {
    const ws = await synced();
    ws.recv({ type: 'message.redacted', conversation_id: DM, seq: 3, reason: 'offensive' });
    expect(store.getState().messages[DM].at(-1)).toMatchObject({ seq: 3, body: '', redacted: { reason: 'offensive' } });
    ws.recv({ type: 'message.restored', conversation_id: DM, seq: 3, message: { conversation_id: DM, seq: 3, sender: 'bob', body: 'rude', ts: 3, client_msg_id: 'k3' } });
    expect(store.getState().messages[DM].at(-1)).toEqual({ conversation_id: DM, seq: 3, sender: 'bob', body: 'rude', ts: 3, client_msg_id: 'k3' });
  });

  it('after a reconnect, the shown conversation takes the moderation it missed from history', async () => {
    const hidden = { conversation_id: DM, seq: 3, sender: 'bob', body: '', ts: 3, client_msg_id: 'k3', redacted: { reason: 'spam' } };
    // Gap fills ask `after`; the moderation check asks `before`.
    const messages = vi.fn(async (_c: string, q: { before?: number }): Promise<Message[]> => (q.before ? [hidden] : []));
    const checks = () => messages.mock.calls.filter(([, q]) => q.before !== undefined);
    await started(fakeApi({ messages }));
    let ws = latest();
    ws.open();
    ws.recv({ type: 'message', conversation_id: DM, seq: 3, sender: 'bob', body: 'rude', ts: 3, client_msg_id: 'k3' });
    ws.recv({ type: 'sync.done', id: ws.ofType('sync')[0].id, conversations: { [DM]: 3 }, truncated: false });
    conn.setView(DM, true);
    await vi.advanceTimersByTimeAsync(0);
    expect(checks()).toEqual([]); // connected all along: the live frames are enough
    ws.drop(1006);
    await vi.advanceTimersByTimeAsync(BACKOFF_CAP_MS);
    ws = latest();
    ws.open();
    ws.recv({ type: 'sync.done', id: ws.ofType('sync')[0].id, conversations: { [DM]: 3 }, truncated: false });
    await vi.advanceTimersByTimeAsync(0);
    expect(checks()).toEqual([[DM, { before: 4, limit: MODERATION_CHECK_PAGE }]]);
    expect(store.getState().messages[DM].at(-1)).toEqual(hidden);
  });

  it('a history answer older than a live restore is not applied', async () => {
    let answer: (m: Message[]) => void = () => undefined;
    const messages = vi.fn((_c: string, q: { before?: number }) =>
      q.before ? new Promise<Message[]>((resolve) => (answer = resolve)) : Promise.resolve([]),
    );
    await started(fakeApi({ messages }));
    let ws = latest();
    ws.open();
    ws.recv({ type: 'message', conversation_id: DM, seq: 3, sender: 'bob', body: 'rude', ts: 3, client_msg_id: 'k3' });
    conn.setView(DM, true);
    ws.drop(1006);
    await vi.advanceTimersByTimeAsync(BACKOFF_CAP_MS);
    ws = latest();
    ws.open();
    ws.recv({ type: 'sync.done', id: ws.ofType('sync')[0].id, conversations: { [DM]: 3 }, truncated: false });
    expect(messages.mock.calls.filter(([, q]) => q.before !== undefined)).toHaveLength(1);
    ws.recv({ type: 'message.redacted', conversation_id: DM, seq: 3, reason: 'spam' });
    ws.recv({ type: 'message.restored', conversation_id: DM, seq: 3, message: { conversation_id: DM, seq: 3, sender: 'bob', body: 'rude', ts: 3, client_msg_id: 'k3' } });
    answer([{ conversation_id: DM, seq: 3, sender: 'bob', body: '', ts: 3, client_msg_id: 'k3', redacted: { reason: 'spam' } }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(store.getState().messages[DM].at(-1)?.body).toBe('rude');
  });

  it('a blocked send fails at once with the rule, and is not sent again', async () => {
    const ws = await synced();
    const cmid = conn.sendMessage(DM, 'buy spam');
    const [sent] = ws.ofType('message.send');
    ws.recv({ type: 'error', id: sent.id, code: 'blocked', reason: 'blocked_term', message: 'refused' });
    expect(store.getState().pending[cmid]).toMatchObject({ status: 'failed', code: 'blocked', error: 'Blocked by moderation: it contains a word the rules block' });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(ws.ofType('message.send')).toHaveLength(1);
  });

  it('report sends message.report and settles on the answer', async () => {
    const ws = await synced();
    const ok = conn.report(DM, 3, 'spam', 'again');
    const [first] = ws.ofType('message.report');
    expect(first).toEqual({ type: 'message.report', conversation_id: DM, seq: 3, reason: 'spam', note: 'again', id: first.id });
    ws.recv({ type: 'ok', id: first.id });
    await expect(ok).resolves.toBeUndefined();
    const refused = conn.report(DM, 9, 'spam', '');
    const second = ws.ofType('message.report')[1];
    ws.recv({ type: 'error', id: second.id, code: 'not_found', message: 'no such message' });
    await expect(refused).rejects.toMatchObject({ code: 'not_found' });
  });
});
