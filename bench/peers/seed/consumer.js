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
  const db = mongo.db(cfg.mongoDb);
  const messages = db.collection('messages');
  const conversations = db.collection('conversations');
  await messages.createIndex({ conversation_id: 1, seq: 1 }, { unique: true });

  const kafka = new Kafka({ clientId: 'seed-consumer', brokers: cfg.kafkaBrokers, logLevel: logLevel.WARN });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: cfg.topic, numPartitions: PARTITIONS }] });
  await admin.disconnect();

  // Per conversation: the last seq and the recent (sender, client_msg_id) keys. Valid only while
  // this process owns the conversation's partition: cleared on every rebalance and loaded from
  // MongoDB on first use (its `last_seq`, and its last DEDUP_WINDOW messages' keys, so that
  // records replayed after a crash, stored but not yet committed, are recognised). Lookups by
  // _id only: the conversations of a batch in one query, their recent messages in another.
  let state = new Map();
  const keyOf = (from, clientMsgId) => `${from}\t${clientMsgId}`;
  async function load(ids) {
    const heads = await conversations.find({ _id: { $in: ids } }).toArray();
    const lastOf = new Map(heads.map((h) => [h._id, h.last_seq]));
    const recentIds = [];
    for (const id of ids) {
      const last = lastOf.get(id) || 0;
      state.set(id, { seq: last, recent: new Set() });
      for (let seq = Math.max(1, last - DEDUP_WINDOW + 1); seq <= last; seq++) {
        recentIds.push(cfg.messageId(id, seq));
      }
    }
    if (recentIds.length === 0) return;
    const recent = await messages
      .find({ _id: { $in: recentIds } }, { projection: { conversation_id: 1, seq: 1, from: 1, client_msg_id: 1 } })
      .sort({ seq: 1 })
      .toArray();
    for (const m of recent) state.get(m.conversation_id).recent.add(keyOf(m.from, m.client_msg_id));
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
      const valid = [];
      for (const record of batch.messages) {
        let m;
        try {
          m = JSON.parse(record.value.toString());
        } catch (err) {
          continue; // not ours: skip it
        }
        const members = cfg.membersOf(m.conversation_id);
        if (!members || !members.includes(m.from) || typeof m.body !== 'string') continue;
        valid.push({ m, members });
      }
      const unknown = [...new Set(valid.map((v) => v.m.conversation_id))].filter((id) => !state.has(id));
      if (unknown.length) await load(unknown);
      const docs = [];
      for (const { m, members } of valid) {
        const st = state.get(m.conversation_id);
        const key = keyOf(m.from, m.client_msg_id);
        if (m.client_msg_id && st.recent.has(key)) continue; // a replayed record
        st.recent.add(key);
        if (st.recent.size > DEDUP_WINDOW) st.recent.delete(st.recent.values().next().value);
        st.seq += 1;
        docs.push({
          _id: cfg.messageId(m.conversation_id, st.seq),
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
        // One `last_seq` per conversation and batch: what a sync reads first (then the
        // messages by _id, which any MongoDB-wire server looks up without a scan).
        const last = new Map();
        for (const d of docs) last.set(d.conversation_id, d.seq);
        await conversations.bulkWrite(
          [...last].map(([id, seq]) => ({
            updateOne: { filter: { _id: id }, update: { $max: { last_seq: seq } }, upsert: true },
          })),
          { ordered: false },
        );
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
