import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createStore, typingUsers } from '../src/protocol';

const DM = 'dm:alice:bob';

describe('store typing expiry (fake timers)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(1_000_000);
  });
  afterEach(() => vi.useRealTimers());

  it('drops a typing start not refreshed within 6 s and notifies subscribers', () => {
    const store = createStore('alice');
    const seen: string[][] = [];
    store.subscribe(() => seen.push(typingUsers(store.getState(), DM, Date.now())));
    store.dispatch({ type: 'typing', conversation_id: DM, user: 'bob', state: 'start', now: store.now() });
    expect(typingUsers(store.getState(), DM, Date.now())).toEqual(['bob']);
    vi.advanceTimersByTime(5_999);
    expect(store.getState().typing[DM]).toBeDefined();
    vi.advanceTimersByTime(1);
    expect(store.getState().typing).toEqual({});
    expect(seen.at(-1)).toEqual([]);
    store.dispose();
  });

  it('a refresh extends the window; other users expire independently', () => {
    const store = createStore('alice');
    store.dispatch({ type: 'typing', conversation_id: DM, user: 'bob', state: 'start', now: store.now() });
    vi.advanceTimersByTime(3_000);
    store.dispatch({ type: 'typing', conversation_id: DM, user: 'bob', state: 'start', now: store.now() });
    store.dispatch({ type: 'typing', conversation_id: DM, user: 'carol', state: 'start', now: store.now() });
    vi.advanceTimersByTime(5_000); // t = 8 s: bob's first start would have expired at 6 s
    expect(typingUsers(store.getState(), DM, Date.now())).toEqual(['bob', 'carol']);
    vi.advanceTimersByTime(1_000); // t = 9 s: both refreshed at 3 s expire now
    expect(store.getState().typing).toEqual({});
    store.dispose();
  });

  it('a stop clears it before the timer', () => {
    const store = createStore('alice');
    store.dispatch({ type: 'typing', conversation_id: DM, user: 'bob', state: 'start', now: store.now() });
    vi.advanceTimersByTime(1_000);
    store.dispatch({ type: 'typing', conversation_id: DM, user: 'bob', state: 'stop', now: store.now() });
    expect(store.getState().typing).toEqual({});
    expect(vi.getTimerCount()).toBe(0);
    store.dispose();
  });

  it('a message from the typist clears it', () => {
    const store = createStore('alice');
    store.dispatch({ type: 'typing', conversation_id: DM, user: 'bob', state: 'start', now: store.now() });
    store.dispatch({
      type: 'messages.received',
      messages: [{ conversation_id: DM, seq: 1, sender: 'bob', body: 'hi', ts: 1, client_msg_id: 'k' }],
    });
    expect(typingUsers(store.getState(), DM, Date.now())).toEqual([]);
    store.dispose();
  });
});
