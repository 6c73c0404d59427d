'use strict';
// Settings shared by the seed's Socket.IO nodes and its consumer, from the environment the
// bench passes (bench/peers/seed.py).

const env = process.env;

module.exports = {
  kafkaBrokers: (env.SEED_KAFKA || '127.0.0.1:9092').split(','),
  redisUrl: env.SEED_REDIS || 'redis://127.0.0.1:6379/3',
  mongoUrl: env.SEED_MONGO || 'mongodb://127.0.0.1:27017/',
  mongoDb: env.SEED_DB || 'seed',
  topic: env.SEED_TOPIC || 'seed.messages',
  group: env.SEED_GROUP || 'seed-consumer',
  // The Socket.IO adapter's Redis channel prefix: the nodes and the consumer's emitter agree on it.
  channel: env.SEED_CHANNEL || 'seed-socket.io',
  jwtSecret: env.SEED_JWT_SECRET || '',
  maxBody: 4000,
};

// A direct conversation's id from its two members, the same on both sides: "dm:<a>:<b>" sorted.
module.exports.directId = (a, b) => (a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`);

// A stored message's _id: its conversation and seq (a sync fetches a range of seqs by _id).
module.exports.messageId = (conversationId, seq) => `${conversationId}#${seq}`;

// The members of a direct conversation id, or null if it is not one.
module.exports.membersOf = (conversationId) => {
  const parts = String(conversationId).split(':');
  return parts.length === 3 && parts[0] === 'dm' ? [parts[1], parts[2]] : null;
};
