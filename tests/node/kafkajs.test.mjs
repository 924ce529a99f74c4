// kafkajs produces and consumes with a consumer group; its admin client creates and describes
// topics on each engine.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import kafkajs from 'kafkajs';

const { Kafka, logLevel, ConfigResourceTypes, CompressionTypes } = kafkajs;
import { startStrata } from './server.mjs';

let server;
let kafka;

before(async () => {
  server = await startStrata();
  kafka = new Kafka({ clientId: 'strata-test', brokers: server.brokers, logLevel: logLevel.NOTHING });
});

after(async () => {
  await server?.stop();
});

test('kafkajs produces and consumes with a group', async () => {
  const topic = `kjs-${Date.now()}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  await admin.disconnect();

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const values = Array.from({ length: 300 }, (_, i) => `v${i}`);
  for (let i = 0; i < values.length; i += 50) {
    await producer.send({
      topic,
      compression: CompressionTypes.GZIP,
      messages: values.slice(i, i + 50).map((value, j) => ({ key: `k${(i + j) % 7}`, value })),
    });
  }
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `kjs-group-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${got.length} messages`)), 60000);
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        got.push({ partition, offset: Number(message.offset), value: message.value.toString() });
        if (got.length === values.length) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  assert.deepEqual(got.map((m) => m.value).sort(), [...values].sort());
  for (let p = 0; p < 3; p++) {
    const offsets = got.filter((m) => m.partition === p).map((m) => m.offset);
    assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b));
  }
});

test('kafkajs admin creates topics on each engine and reads their configs', async () => {
  const admin = kafka.admin();
  await admin.connect();
  for (const [engine, model] of [['memory', 'dedicated'], ['file', 'dedicated'], ['file', 'shared']]) {
    const topic = `kjs-${engine}-${model}-${Date.now()}`;
    await admin.createTopics({
      topics: [{ topic, numPartitions: 1, configEntries: [
        { name: 'storage.engine', value: engine }, { name: 'storage.model', value: model },
      ] }],
    });
    const { resources } = await admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }], includeSynonyms: false,
    });
    const entries = Object.fromEntries(resources[0].configEntries.map((e) => [e.configName, e.configValue]));
    assert.equal(entries['storage.engine'], engine);
    assert.equal(entries['storage.model'], model);
  }
  await admin.disconnect();
});
