'use strict';
// One Socket.IO node of the seed: `node node.js` with SEED_PORT (the bench runs two).
//
// The message lifecycle, the node's half: a client emits `send` over its WebSocket; the node
// produces it to Kafka (acks=all) and acks the sender once Kafka has it. The consumer
// (consumer.js) sequences it, stores it in MongoDB and publishes it through Redis pub/sub; the
// Redis adapter hands it to whichever node holds the recipient's room `user:<id>`.
// `sync` answers from MongoDB: every message of the given conversations above a cursor.

const http = require('http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');
const { Kafka, logLevel } = require('kafkajs');
const { MongoClient } = require('mongodb');
const jwt = require('jsonwebtoken');
const cfg = require('./common');

const port = Number(process.env.SEED_PORT || 8094);

async function main() {
  const pub = createClient({ url: cfg.redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);

  const kafka = new Kafka({
    clientId: `seed-node-${port}`,
    brokers: cfg.kafkaBrokers,
    logLevel: logLevel.WARN,
  });
  // Idempotent producer: a retried send is not written twice (requires acks=all).
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 5 });
  await producer.connect();

  const mongo = new MongoClient(cfg.mongoUrl, { maxPoolSize: 20 });
  await mongo.connect();
  const messages = mongo.db(cfg.mongoDb).collection('messages');
  const conversations = mongo.db(cfg.mongoDb).collection('conversations');

  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'ok', sessions: io.engine.clientsCount }));
      return;
    }
    res.writeHead(404);
    res.end();
  });
  const io = new Server(server, {
    adapter: createAdapter(pub, sub, { key: cfg.channel }),
    transports: ['websocket'],
    pingInterval: 20000,
    pingTimeout: 10000,
    maxHttpBufferSize: 64 * 1024,
    serveClient: false,
  });

  // JWT in a Socket.IO middleware: HS256 with the same secret as the chat edges.
  io.use((socket, next) => {
    const token = socket.handshake.auth && socket.handshake.auth.token;
    try {
      const claims = jwt.verify(String(token || ''), cfg.jwtSecret, { algorithms: ['HS256'] });
      if (typeof claims.sub !== 'string' || !claims.sub) throw new Error('no sub');
      socket.data.user = claims.sub;
      next();
    } catch (err) {
      next(new Error('unauthorized'));
    }
  });

  // Sends of one event-loop turn go to Kafka in one request: kafkajs has no linger of its own,
  // and one request per message would bill the seed for a batching any real deployment does.
  let queue = [];
  function flush() {
    const batch = queue;
    queue = [];
    producer
      .send({ topic: cfg.topic, acks: -1, messages: batch.map((b) => b.record) })
      .then(() => batch.forEach((b) => b.ack({ ok: true })))
      .catch((err) => batch.forEach((b) => b.ack({ error: 'unavailable', detail: String(err) })));
  }
  function produce(record, ack) {
    if (queue.length === 0) setImmediate(flush);
    queue.push({ record, ack });
  }

  io.on('connection', (socket) => {
    const user = socket.data.user;
    socket.join(`user:${user}`);

    socket.on('send', (data, ack) => {
      if (typeof ack !== 'function') return;
      const members = data && cfg.membersOf(data.conversation_id);
      if (!members || !members.includes(user)) return ack({ error: 'forbidden' });
      if (typeof data.body !== 'string' || data.body.length > cfg.maxBody) {
        return ack({ error: 'invalid' });
      }
      const value = JSON.stringify({
        conversation_id: data.conversation_id,
        from: user,
        client_msg_id: String(data.client_msg_id || ''),
        body: data.body,
        ts: Date.now(),
      });
      produce({ key: data.conversation_id, value }, ack);
    });

    // What a reconnecting client missed: every stored message above its cursor, per
    // conversation, in seq order, then the answer (the client's `sync.done`). The conversations'
    // last seqs first, then the missing messages by _id.
    socket.on('sync', async (data, ack) => {
      if (typeof ack !== 'function') return;
      const cursors = (data && data.cursors) || {};
      try {
        const mine = Object.keys(cursors).filter((c) => {
          const members = cfg.membersOf(c);
          return members && members.includes(user);
        });
        const heads = await conversations.find({ _id: { $in: mine } }).toArray();
        for (const head of heads) {
          const conv = head._id;
          const after = Number(cursors[conv]) || 0;
          const ids = [];
          for (let seq = after + 1; seq <= Math.min(head.last_seq, after + 500); seq++) {
            ids.push(cfg.messageId(conv, seq));
          }
          if (ids.length === 0) continue;
          const missed = await messages.find({ _id: { $in: ids } }).sort({ seq: 1 }).toArray();
          for (const m of missed) {
            if (m.from === user) continue; // the client knows its own messages
            socket.emit('msg', {
              conversation_id: m.conversation_id,
              seq: m.seq,
              from: m.from,
              client_msg_id: m.client_msg_id,
              body: m.body,
              ts: m.ts,
            });
          }
        }
        ack({ ok: true });
      } catch (err) {
        ack({ error: 'unavailable', detail: String(err) });
      }
    });
  });

  server.listen(port, '127.0.0.1');

  const stop = async () => {
    io.close();
    await Promise.allSettled([producer.disconnect(), mongo.close(), pub.quit(), sub.quit()]);
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
