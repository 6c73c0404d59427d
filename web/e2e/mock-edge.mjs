#!/usr/bin/env node
/**
 * A small in-memory stand-in for two edge nodes, for developing the web client without the
 * backend: `node web/e2e/mock-edge.mjs` serves web/dist and speaks PROTOCOL.md on two ports
 * (default 18080 and 18081, sharing one state). Tokens are unsigned (dev only). Not the product.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const DIST = fileURLToPath(new URL('../dist/', import.meta.url));
const PORTS = (process.env.MOCK_PORTS ?? '18080,18081').split(',').map(Number);

// ---------------------------------------------------------------- state
const convs = new Map(); // id -> {id, kind, title, members:Set, admins:Set, messages:[], receipts: Map<user,{read,delivered}>, keys: Map}
const sessions = new Set(); // {user, send, subs:Set}
const lastSeen = new Map();
const tickets = new Map(); // one-time WebSocket tickets -> user

const b64u = (s) => Buffer.from(s).toString('base64url');
const tokenFor = (user) => `${b64u('{"alg":"none","typ":"JWT"}')}.${b64u(JSON.stringify({ sub: user, exp: Math.floor(Date.now() / 1000) + 3600 }))}.mock`;
function userOf(token) {
  try {
    const p = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
    return typeof p.sub === 'string' && /^[A-Za-z0-9_.@-]{1,64}$/.test(p.sub) ? p.sub : null;
  } catch {
    return null;
  }
}
const view = (c) => ({ id: c.id, kind: c.kind, title: c.title, members: [...c.members], admins: [...c.admins], last_seq: c.messages.length });
const online = (u) => [...sessions].some((s) => s.user === u);
const toUser = (u, f, except) => { for (const s of sessions) if (s.user === u && s !== except) s.send(f); };
const toMembers = (c, f, except) => { for (const m of c.members) toUser(m, f, except); };
// Presence is visible only to users who share a conversation (docs/protocol.md); others get
// what a user never seen gets. (The real edge also re-checks watches when membership changes.)
const shares = (a, b) => a === b || [...convs.values()].some((c) => c.members.has(a) && c.members.has(b));
const presenceOf = (viewer, u) => shares(viewer, u)
  ? { user: u, status: online(u) ? 'online' : 'offline', last_seen: lastSeen.get(u) ?? 0 }
  : { user: u, status: 'offline', last_seen: 0 };
function presenceChanged(user) {
  for (const s of sessions) if (s.subs.has(user) && shares(s.user, user)) s.send({ type: 'presence', ...presenceOf(s.user, user) });
}
function receipt(c, user, kind, seq) {
  const r = c.receipts.get(user) ?? { read: 0, delivered: 0 };
  if (seq <= r[kind] || seq > c.messages.length) return;
  r[kind] = seq;
  c.receipts.set(user, r);
  toMembers(c, { type: 'receipt', conversation_id: c.id, user, kind, seq });
}

function handle(s, f) {
  const reply = (o) => s.send({ ...o, ...(f.id !== undefined ? { id: f.id } : {}) });
  const err = (code, message) => reply({ type: 'error', code, message });
  const conv = () => {
    const c = convs.get(f.conversation_id);
    if (!c || !c.members.has(s.user)) { err('not_member', 'not a member'); return null; }
    return c;
  };
  switch (f.type) {
    case 'ping': return reply({ type: 'pong' });
    case 'conversation.create': {
      let c;
      if (f.kind === 'direct') {
        const other = f.members?.[0];
        if (!other) return err('bad_request', 'members');
        const [lo, hi] = [s.user, other].sort();
        const id = `dm:${lo}:${hi}`;
        c = convs.get(id);
        if (!c) {
          c = { id, kind: 'direct', title: null, members: new Set([lo, hi]), admins: new Set(), messages: [], receipts: new Map(), keys: new Map() };
          convs.set(id, c);
          toMembers(c, { type: 'conversation', event: 'created', conversation: view(c) });
        }
      } else {
        const id = `grp:${randomBytes(16).toString('hex')}`;
        c = { id, kind: 'group', title: f.title ?? null, members: new Set([s.user, ...(f.members ?? [])]), admins: new Set([s.user]), messages: [], receipts: new Map(), keys: new Map() };
        convs.set(id, c);
        toMembers(c, { type: 'conversation', event: 'created', conversation: view(c) });
      }
      return reply({ type: 'ok', conversation: view(c) });
    }
    case 'conversation.add_members': {
      const c = conv(); if (!c) return;
      if (!c.admins.has(s.user)) return err('forbidden', 'admins only');
      for (const m of f.members ?? []) c.members.add(m);
      toMembers(c, { type: 'conversation', event: 'members_added', conversation: view(c) });
      return reply({ type: 'ok', conversation: view(c) });
    }
    case 'conversation.remove_members': {
      const c = conv(); if (!c) return;
      const ms = f.members ?? [];
      if (!c.admins.has(s.user) && !(ms.length === 1 && ms[0] === s.user)) return err('forbidden', 'admins only');
      const affected = [...c.members];
      for (const m of ms) { c.members.delete(m); c.admins.delete(m); }
      for (const u of affected) toUser(u, { type: 'conversation', event: 'members_removed', conversation: view(c) });
      return reply({ type: 'ok', conversation: view(c) });
    }
    case 'message.send': {
      const c = conv(); if (!c) return;
      if (process.env.MOCK_REJECT_BODY && f.body === process.env.MOCK_REJECT_BODY) return err('forbidden', 'rejected by the mock');
      const key = `${s.user}\u0000${f.client_msg_id}`;
      const delay = Number(process.env.MOCK_ACK_DELAY_MS ?? 30);
      setTimeout(() => {
        let m = c.keys.get(key);
        if (!m) {
          m = { conversation_id: c.id, seq: c.messages.length + 1, sender: s.user, body: f.body, ts: Date.now(), client_msg_id: f.client_msg_id };
          c.messages.push(m);
          c.keys.set(key, m);
          toMembers(c, { type: 'message', ...m }, s);
        }
        reply({ type: 'message.ack', conversation_id: c.id, client_msg_id: m.client_msg_id, seq: m.seq, ts: m.ts });
      }, delay);
      return;
    }
    case 'message.delivered': { const c = conv(); if (c) receipt(c, s.user, 'delivered', f.seq); return; }
    case 'receipt.read': { const c = conv(); if (c) receipt(c, s.user, 'read', f.seq); return; }
    case 'typing': {
      const c = conv(); if (!c) return;
      for (const m of c.members) if (m !== s.user) toUser(m, { type: 'typing', conversation_id: c.id, user: s.user, state: f.state });
      return;
    }
    case 'sync': {
      const out = {};
      for (const c of convs.values()) {
        if (!c.members.has(s.user)) continue;
        out[c.id] = c.messages.length;
        const from = f.cursors?.[c.id] ?? c.receipts.get(s.user)?.delivered ?? 0;
        for (const m of c.messages.slice(from, from + 500)) s.send({ type: 'message', ...m });
      }
      return reply({ type: 'sync.done', conversations: out, truncated: false });
    }
    case 'presence.subscribe':
    case 'presence.query': {
      if (f.type === 'presence.subscribe') for (const u of f.users ?? []) s.subs.add(u);
      return reply({ type: 'ok', presence: (f.users ?? []).map((u) => presenceOf(s.user, u)) });
    }
    default: return err('unknown_type', String(f.type));
  }
}

// ---------------------------------------------------------------- WebSocket (RFC 6455, text frames only)
function upgrade(req, socket, user) {
  const accept = createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  const frame = (op, payload) => {
    const len = payload.length;
    const head = len < 126 ? Buffer.from([0x80 | op, len]) : len < 65536 ? Buffer.from([0x80 | op, 126, len >> 8, len & 255]) : (() => { const b = Buffer.alloc(10); b[0] = 0x80 | op; b[1] = 127; b.writeBigUInt64BE(BigInt(len), 2); return b; })();
    if (!socket.destroyed) socket.write(Buffer.concat([head, payload]));
  };
  const s = { user, subs: new Set(), send: (o) => frame(1, Buffer.from(JSON.stringify(o))) };
  const wasOnline = online(user);
  sessions.add(s);
  if (!wasOnline) presenceChanged(user);
  let buf = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 2) {
      const op = buf[0] & 15;
      let len = buf[1] & 127;
      let off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const data = Buffer.from(buf.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < data.length; i++) data[i] ^= mask[i & 3];
      buf = buf.subarray(off + 4 + len);
      if (op === 8) { frame(8, data.subarray(0, 2)); socket.end(); return; }
      if (op === 9) { frame(10, data); continue; }
      if (op !== 1) continue;
      let f;
      try { f = JSON.parse(data.toString()); } catch { s.send({ type: 'error', code: 'bad_request', message: 'not JSON' }); continue; }
      handle(s, f);
    }
  });
  const gone = () => {
    if (!sessions.delete(s)) return;
    if (!online(user)) { lastSeen.set(user, Date.now()); presenceChanged(user); }
  };
  socket.on('close', gone);
  socket.on('error', gone);
}

// ---------------------------------------------------------------- HTTP
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.map': 'application/json', '.svg': 'image/svg+xml' };
function json(res, code, body) {
  res.writeHead(code, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}
function server() {
  const srv = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/healthz') return json(res, 200, { ok: true });
    if (url.pathname === '/v1/dev/token' && req.method === 'POST') {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        try {
          const { user } = JSON.parse(body);
          if (!/^[A-Za-z0-9_.@-]{1,64}$/.test(user)) return json(res, 400, { error: 'bad_request' });
          return json(res, 200, { token: tokenFor(user), user, expires_at: Date.now() + 3600_000 });
        } catch { return json(res, 400, { error: 'bad_request' }); }
      });
      return;
    }
    if (url.pathname.startsWith('/v1/')) {
      const user = userOf((req.headers.authorization ?? '').replace(/^Bearer /, ''));
      if (!user) return json(res, 401, { error: 'unauthorized' });
      if (url.pathname === '/v1/ws-ticket' && req.method === 'POST') {
        const ticket = randomBytes(32).toString('base64url');
        tickets.set(ticket, user);
        return json(res, 200, { ticket, expires_at: Date.now() + 30_000 });
      }
      if (url.pathname === '/v1/conversations') {
        return json(res, 200, { next: null, conversations: [...convs.values()].filter((c) => c.members.has(user)).map((c) => ({ ...view(c), read_seq: c.receipts.get(user)?.read ?? 0 })) });
      }
      const m = /^\/v1\/conversations\/([^/]+)\/(messages|receipts)$/.exec(url.pathname);
      const c = m && convs.get(decodeURIComponent(m[1]));
      if (!c || !c.members.has(user)) return json(res, 404, { error: 'not_found' });
      if (m[2] === 'receipts') return json(res, 200, { receipts: Object.fromEntries(c.receipts) });
      const limit = Math.min(200, Number(url.searchParams.get('limit') ?? 50));
      const before = url.searchParams.get('before');
      const after = url.searchParams.get('after');
      let list = c.messages;
      if (after !== null) list = list.filter((x) => x.seq > Number(after)).slice(0, limit);
      else if (before !== null) list = list.filter((x) => x.seq < Number(before)).slice(-limit);
      else list = list.slice(-limit);
      return json(res, 200, { messages: list });
    }
    const rel = normalize(decodeURIComponent(url.pathname)).replace(/^(\.\.[/\\])+/, '');
    let file = join(DIST, rel);
    if (!file.startsWith(DIST) || !existsSync(file) || statSync(file).isDirectory()) file = join(DIST, 'index.html');
    res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });
  srv.on('upgrade', (req, socket) => {
    const url = new URL(req.url, 'http://x');
    let user = null;
    if (url.pathname === '/v1/ws') {
      const ticket = url.searchParams.get('ticket');
      if (ticket !== null) {
        user = tickets.get(ticket) ?? null;
        tickets.delete(ticket); // good once
      } else user = userOf(url.searchParams.get('access_token') ?? '');
    }
    if (!user) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n{"error":"unauthorized"}');
      return;
    }
    upgrade(req, socket, user);
  });
  return srv;
}

for (const port of PORTS) server().listen(port, '127.0.0.1', () => console.log(`mock edge on http://127.0.0.1:${port}`));
