import { describe, expect, it } from 'vitest';
import {
  charCount,
  decodeFrame,
  decodeJwtPayload,
  directConversationId,
  encodeFrame,
  frames,
  isValidUserId,
  presenceEntries,
} from '../src/protocol';

describe('frame builders', () => {
  it('build every client frame', () => {
    expect(frames.createDirect('bob', 1)).toEqual({ type: 'conversation.create', kind: 'direct', members: ['bob'], id: 1 });
    expect(frames.createGroup(['bob', 'carol'], 'Team', 'r1')).toEqual({
      type: 'conversation.create',
      kind: 'group',
      members: ['bob', 'carol'],
      title: 'Team',
      id: 'r1',
    });
    expect(frames.createGroup([], undefined)).toEqual({ type: 'conversation.create', kind: 'group', members: [] });
    expect(frames.addMembers('g', ['x'], 2)).toEqual({ type: 'conversation.add_members', conversation_id: 'g', members: ['x'], id: 2 });
    expect(frames.removeMembers('g', ['x'])).toEqual({ type: 'conversation.remove_members', conversation_id: 'g', members: ['x'] });
    expect(frames.send('c', 'm1', 'hello', 'm-1')).toEqual({
      type: 'message.send',
      conversation_id: 'c',
      client_msg_id: 'm1',
      body: 'hello',
      id: 'm-1',
    });
    expect(frames.delivered('c', 4)).toEqual({ type: 'message.delivered', conversation_id: 'c', seq: 4 });
    expect(frames.read('c', 3)).toEqual({ type: 'receipt.read', conversation_id: 'c', seq: 3 });
    expect(frames.typing('c', 'start')).toEqual({ type: 'typing', conversation_id: 'c', state: 'start' });
    expect(frames.sync({ c: 2 }, 's1')).toEqual({ type: 'sync', cursors: { c: 2 }, id: 's1' });
    expect(frames.sync(undefined)).toEqual({ type: 'sync' });
    expect(frames.presenceSubscribe(['bob'], 'p')).toEqual({ type: 'presence.subscribe', users: ['bob'], id: 'p' });
    expect(frames.presenceQuery(['bob'])).toEqual({ type: 'presence.query', users: ['bob'] });
    expect(frames.ping('x')).toEqual({ type: 'ping', id: 'x' });
    expect(JSON.parse(encodeFrame(frames.ping(7)))).toEqual({ type: 'ping', id: 7 });
  });
});

describe('decodeFrame', () => {
  it('accepts known server frames and rejects the rest', () => {
    expect(decodeFrame('{"type":"pong","id":"p1"}')).toEqual({ type: 'pong', id: 'p1' });
    expect(decodeFrame('{"type":"message","conversation_id":"c","seq":1,"sender":"b","body":"x","ts":1,"client_msg_id":"k","extra":1}')?.type).toBe(
      'message',
    );
    expect(decodeFrame('not json')).toBeNull();
    expect(decodeFrame('[1]')).toBeNull();
    expect(decodeFrame('{"type":"bogus"}')).toBeNull();
    expect(decodeFrame('{"id":1}')).toBeNull();
  });
});

describe('helpers', () => {
  it('direct conversation ids use byte order', () => {
    expect(directConversationId('bob', 'alice')).toBe('dm:alice:bob');
    expect(directConversationId('Zed', 'alice')).toBe('dm:Zed:alice');
  });
  it('validates user ids', () => {
    expect(isValidUserId('alice.b@x-1_2')).toBe(true);
    expect(isValidUserId('')).toBe(false);
    expect(isValidUserId('a b')).toBe(false);
    expect(isValidUserId('x'.repeat(65))).toBe(false);
  });
  it('normalises ok.presence lists and maps', () => {
    expect(presenceEntries([{ user: 'bob', status: 'online', last_seen: 1 }])).toEqual([{ user: 'bob', status: 'online', last_seen: 1 }]);
    expect(presenceEntries({ bob: { status: 'offline', last_seen: 5 }, carol: 'online' })).toEqual([
      { user: 'bob', status: 'offline', last_seen: 5 },
      { user: 'carol', status: 'online' },
    ]);
    expect(presenceEntries(undefined)).toEqual([]);
  });
  it('decodes a JWT payload (base64url, UTF-8)', () => {
    const bytes = new TextEncoder().encode(JSON.stringify({ sub: 'alice', exp: 2, name: 'Ålice' }));
    const payload = btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    expect(decodeJwtPayload(`eyJhbGciOiJIUzI1NiJ9.${payload}.sig`)).toEqual({ sub: 'alice', exp: 2, name: 'Ålice' });
    expect(decodeJwtPayload('garbage')).toBeNull();
  });
  it('counts characters by code point', () => {
    expect(charCount('a😀b')).toBe(3);
  });
});
