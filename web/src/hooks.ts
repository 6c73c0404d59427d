import { useEffect, useState, useSyncExternalStore } from 'react';
import type { Connection } from './connection';
import type { ChatState, Store } from './protocol';

export function useChatState(store: Store): ChatState {
  return useSyncExternalStore(store.subscribe, store.getState);
}

export function useConnectionStatus(conn: Connection) {
  return useSyncExternalStore(
    (l) => conn.onStatus(l),
    () => conn.status,
  );
}

/** The open conversation lives in the URL hash (`#/c/<id>`), so Back returns to the list. */
export function useHashConversation(): [string | null, (id: string | null) => void] {
  const read = () => {
    const m = /^#\/c\/(.+)$/.exec(globalThis.location.hash);
    if (!m) return null;
    try {
      return decodeURIComponent(m[1]);
    } catch {
      return null;
    }
  };
  const [id, setId] = useState<string | null>(read);
  useEffect(() => {
    const on = () => setId(read());
    globalThis.addEventListener('hashchange', on);
    return () => globalThis.removeEventListener('hashchange', on);
  }, []);
  const go = (next: string | null) => {
    const hash = next ? `#/c/${encodeURIComponent(next)}` : '#/';
    if (globalThis.location.hash !== hash) globalThis.location.hash = hash;
    setId(next);
  };
  return [id, go];
}

export function usePageVisible(): boolean {
  const get = () => globalThis.document?.visibilityState !== 'hidden';
  const [v, setV] = useState(get);
  useEffect(() => {
    const on = () => setV(get());
    document.addEventListener('visibilitychange', on);
    return () => document.removeEventListener('visibilitychange', on);
  }, []);
  return v;
}
