import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError, createApi } from '../src/api';
import { allowedOrigins, configuredOrigins } from '../src/session';

class MemoryStorage {
  private readonly items = new Map<string, string>();
  getItem(k: string) {
    return this.items.get(k) ?? null;
  }
  setItem(k: string, v: string) {
    this.items.set(k, v);
  }
  removeItem(k: string) {
    this.items.delete(k);
  }
}

let storage: MemoryStorage;

function page(url: string, metaEdges: string | null) {
  const u = new URL(url);
  vi.stubGlobal('location', { origin: u.origin, search: u.search });
  vi.stubGlobal('document', {
    querySelector: (sel: string) =>
      sel === 'meta[name="chat-edges"]' && metaEdges !== null ? { getAttribute: () => metaEdges } : null,
  });
}

beforeEach(() => {
  storage = new MemoryStorage();
  vi.stubGlobal('localStorage', storage);
});
afterEach(() => vi.unstubAllGlobals());

describe('edges the token may go to', () => {
  const META = 'http://127.0.0.1:8080,http://127.0.0.1:8081';

  it('allows the page origin and the edges the server lists', () => {
    page('http://127.0.0.1:8000/', META);
    expect([...allowedOrigins()]).toEqual(['http://127.0.0.1:8000', 'http://127.0.0.1:8080', 'http://127.0.0.1:8081']);
    page('http://127.0.0.1:8000/', null);
    expect([...allowedOrigins()]).toEqual(['http://127.0.0.1:8000']);
  });

  it('ignores and forgets ?edges= naming another host', () => {
    page('http://127.0.0.1:8000/?edges=https://evil.example', META);
    expect(configuredOrigins()).toBeUndefined();
    expect(storage.getItem('chat.edges')).toBeNull();
    // Mixed: only the allowed entries are used and remembered.
    page('http://127.0.0.1:8000/?edges=https://evil.example,http://127.0.0.1:8081/x', META);
    expect(configuredOrigins()).toEqual(['http://127.0.0.1:8081']);
    expect(storage.getItem('chat.edges')).toBe('http://127.0.0.1:8081');
    // Remembered, then used on the next load without the query.
    page('http://127.0.0.1:8000/', META);
    expect(configuredOrigins()).toEqual(['http://127.0.0.1:8081']);
  });

  it('drops a poisoned remembered list (saved before this check existed)', () => {
    storage.setItem('chat.edges', 'https://evil.example,http://127.0.0.1:8080');
    page('http://127.0.0.1:8000/', META);
    expect(configuredOrigins()).toEqual(['http://127.0.0.1:8080']);
    storage.setItem('chat.edges', 'https://evil.example');
    expect(configuredOrigins()).toBeUndefined();
  });

  it('refuses look-alikes and other schemes', () => {
    page('http://127.0.0.1:8000/', META);
    const bad = [
      'http://127.0.0.1:8080@evil.example',
      'http://127.0.0.1:80800',
      'https://127.0.0.1:8080',
      'ws://127.0.0.1:8080',
      'javascript:alert(1)',
      'data:text/html,x',
      'http://127.0.0.1.evil.example:8080',
      '//evil.example',
      ' ',
      '',
    ];
    for (const entry of bad) {
      page(`http://127.0.0.1:8000/?edges=${encodeURIComponent(entry)}`, META);
      expect(configuredOrigins(), entry).toBeUndefined();
    }
  });
});

describe('REST', () => {
  it('pages through GET /v1/conversations', async () => {
    const pages: Record<string, object> = {
      '': { conversations: [{ id: 'dm:a:b' }], next: 'dm:a:b' },
      'dm:a:b': { conversations: [{ id: 'grp:1' }], next: null },
    };
    const urls: string[] = [];
    vi.stubGlobal('fetch', async (url: string) => {
      urls.push(url);
      const after = new URL(url, 'http://x').searchParams.get('after') ?? '';
      return new Response(JSON.stringify(pages[after]), { status: 200 });
    });
    const list = await createApi('tok').conversations();
    expect(list.map((c) => c.id)).toEqual(['dm:a:b', 'grp:1']);
    expect(urls).toEqual(['/v1/conversations?limit=500', '/v1/conversations?limit=500&after=dm%3Aa%3Ab']);
  });

  it('waits out a 429 as told, then retries', async () => {
    vi.useFakeTimers();
    let calls = 0;
    vi.stubGlobal('fetch', async () => {
      calls++;
      if (calls <= 2) return new Response(JSON.stringify({ error: 'rate_limited', retry_after_ms: 700 }), { status: 429 });
      return new Response(JSON.stringify({ receipts: { bob: { read: 1, delivered: 1 } } }), { status: 200 });
    });
    const pending = createApi('tok').receipts('dm:a:b');
    await vi.advanceTimersByTimeAsync(600);
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(400); // 1,000 ms: the second try (after 700)
    expect(calls).toBe(2);
    await vi.advanceTimersByTimeAsync(800); // 1,800 ms: the third (after 1,400) succeeds
    expect(await pending).toEqual({ bob: { read: 1, delivered: 1 } });
    expect(calls).toBe(3);
    // Past the retries, the 429 reaches the caller.
    calls = -100;
    const failing = createApi('tok').receipts('dm:a:b');
    const outcome = failing.then(
      () => 'ok',
      (e: ApiError) => e.status,
    );
    await vi.advanceTimersByTimeAsync(5000);
    expect(await outcome).toBe(429);
    vi.useRealTimers();
  });

  it('asks for a ticket with the token in the header', async () => {
    const seen: RequestInit[] = [];
    vi.stubGlobal('fetch', async (_url: string, init: RequestInit) => {
      seen.push(init);
      return new Response(JSON.stringify({ ticket: 'abc', expires_at: 1 }), { status: 200 });
    });
    expect(await createApi('tok').wsTicket()).toBe('abc');
    expect(seen[0].method).toBe('POST');
    expect((seen[0].headers as Record<string, string>).Authorization).toBe('Bearer tok');
  });
});
