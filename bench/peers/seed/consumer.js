'use strict';
// The seed's consumer group process: `node consumer.js` with SEED_HEALTH_PORT.
//
// For each batch of records from Kafka: validate, assign the next seq of the conversation,
// store the messages in MongoDB, publish each through Redis pub/sub to the rooms of both
// members (the recipient's nodes deliver it; the sender's sessions learn its seq), then commit
// the offsets. A record is acknowledged to its sender before this (once Kafka has it), so a
// crash here replays it: the (sender, client_msg_id) window below drops the replay.

const http = require('http');
const { Kafka, logLevel } = require('kafkajs');
const { MongoClient } = require('mongodb');
const { createClient } = require('redis');
const { Emitter } = require('@socket.io/redis-emitter');
const cfg = require('./common');

const healthPort = Number(process.env.SEED_HEALTH_PORT || 8099);
const PARTITIONS = Number(process.env.SEED_PARTITIONS || 8);
const DEDUP_WINDOW = 256;

async function main() {
  const redis = createClient({ url: cfg.redisUrl });
  await redis.connect();
  const emitter = new Emitter(redis, { key: cfg.channel });

  const mongo = new MongoClient(cfg.mongoUrl, { maxPoolSize: 10 });
  await mongo.connect();
  const messages = mongo.db(cfg.mongoDb).collection('messages');
  await messages.createIndex({ conversation_id: 1, seq: 1 }, { unique: true });

  const kafka = new Kafka({ clientId: 'seed-consumer', brokers: cfg.kafkaBrokers, logLevel: logLevel.WARN });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: cfg.topic, numPartitions: PARTITIONS }] });
  await admin.disconnect();

  // Per conversation: the last seq and the recent (sender, client_msg_id) keys. Valid only while
  // this process owns the conversation's partition: cleared on every rebalance and reloaded
  // from MongoDB on first use.
  let state = new Map();
  async function conversation(id) {
    let st = state.get(id);
    if (!st) {
      const last = await messages.find({ conversation_id: id }).sort({ seq: -1 }).limit(1).toArray();
      st = { seq: last.length ? last[0].seq : 0, recent: new Set() };
      state.set(id, st);
    }
    return st;
  }

  let ready = false;
  const consumer = kafka.consumer({ groupId: cfg.group, maxWaitTimeInMs: 20 });
  consumer.on(consumer.events.GROUP_JOIN, () => {
    state = new Map();
    ready = true;
  });
  await consumer.connect();
  await consumer.subscribe({ topic: cfg.topic, fromBeginning: true });
  await consumer.run({
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary }) => {
      const docs = [];
      for (const record of batch.messages) {
        let m;
        try {
          m = JSON.parse(record.value.toString());
        } catch (err) {
          continue; // not ours: skip it
        }
        const members = cfg.membersOf(m.conversation_id);
        if (!members || !members.includes(m.from) || typeof m.body !== 'string') continue;
        const st = await conversation(m.conversation_id);
        const key = `${m.from}\t${m.client_msg_id}`;
        if (m.client_msg_id && st.recent.has(key)) continue; // a replayed record
        st.recent.add(key);
        if (st.recent.size > DEDUP_WINDOW) st.recent.delete(st.recent.values().next().value);
        st.seq += 1;
        docs.push({
          conversation_id: m.conversation_id,
          seq: st.seq,
          from: m.from,
          to: members[0] === m.from ? members[1] : members[0],
          client_msg_id: m.client_msg_id,
          body: m.body,
          ts: m.ts,
          stored_at: Date.now(),
        });
      }
      if (docs.length) {
        await messages.insertMany(docs, { ordered: true });
        for (const d of docs) {
          emitter.to([`user:${d.to}`, `user:${d.from}`]).emit('msg', {
            conversation_id: d.conversation_id,
            seq: d.seq,
            from: d.from,
            client_msg_id: d.client_msg_id,
            body: d.body,
            ts: d.ts,
          });
        }
      }
      const last = batch.messages[batch.messages.length - 1];
      if (last) resolveOffset(last.offset);
      await commitOffsetsIfNecessary();
      await heartbeat();
    },
  });

  http
    .createServer((req, res) => {
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: ready ? 'ok' : 'joining' }));
    })
    .listen(healthPort, '127.0.0.1');

  const stop = async () => {
    await Promise.allSettled([consumer.disconnect(), mongo.close(), redis.quit()]);
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
