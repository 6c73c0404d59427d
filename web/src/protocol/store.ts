/**
 * A tiny observable store around the reducer. Its only side effect is a timer that expires
 * typing indicators (6 s without a refresh), so the view never shows a stale "typing…".
 */
import { initialState, nextTypingExpiry, reduce, type Action, type ChatState } from './state';

export interface Store {
  getState(): ChatState;
  dispatch(action: Action): void;
  subscribe(listener: () => void): () => void;
  /** Current time as the store sees it (Date.now unless injected). */
  now(): number;
  /** Cancel the expiry timer. */
  dispose(): void;
}

export interface StoreOptions {
  now?: () => number;
}

export function createStore(me: string, opts: StoreOptions = {}): Store {
  const now = opts.now ?? (() => Date.now());
  let state = initialState(me);
  const listeners = new Set<() => void>();
  let timer: ReturnType<typeof setTimeout> | null = null;
  let timerAt: number | null = null;

  const schedule = () => {
    const at = nextTypingExpiry(state);
    if (at === timerAt) return;
    if (timer !== null) clearTimeout(timer);
    timer = null;
    timerAt = at;
    if (at === null) return;
    timer = setTimeout(() => {
      timer = null;
      timerAt = null;
      dispatch({ type: 'typing.expire', now: now() });
      schedule();
    }, Math.max(0, at - now()));
  };

  const dispatch = (action: Action) => {
    const next = reduce(state, action);
    if (next === state) return;
    state = next;
    schedule();
    for (const l of [...listeners]) l();
  };

  return {
    getState: () => state,
    dispatch,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    now,
    dispose() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      timerAt = null;
      listeners.clear();
    },
  };
}
