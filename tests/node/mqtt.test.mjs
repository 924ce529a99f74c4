// mqtt.js (MQTT 3.1.1 and 5.0) publishes and subscribes at each QoS over TCP and over WebSocket,
// across transports, with MQTT 5 properties and a retained message.
import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import mqtt from 'mqtt';
import { startStrata } from './server.mjs';

let server;
const clients = [];
let nextId = 0;

before(async () => {
  server = await startStrata();
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
});

after(async () => {
  await server?.stop();
});

const NAMES = { 4: 'MQTT 3.1.1', 5: 'MQTT 5' };

function url(transport) {
  return transport === 'tcp' ? server.mqttUrl : server.mqttWsUrl;
}

async function connect(transport, protocolVersion, options = {}) {
  const client = await mqtt.connectAsync(url(transport), {
    protocolVersion,
    clientId: `node-${process.pid}-${nextId++}`,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...options,
  });
  clients.push(client);
  return client;
}

// Resolves with the next `count` messages (listening starts at the call); rejects after `ms`.
function collect(client, count, ms = 5000) {
  return new Promise((resolve, reject) => {
    const got = [];
    const onMessage = (topic, payload, packet) => {
      got.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain, properties: packet.properties });
      if (got.length === count) {
        clearTimeout(timer);
        client.off('message', onMessage);
        resolve(got);
      }
    };
    const timer = setTimeout(() => {
      client.off('message', onMessage);
      reject(new Error(`received ${got.length} of ${count} messages: ${JSON.stringify(got)}`));
    }, ms);
    client.on('message', onMessage);
  });
}

// Rejects if a message arrives within `ms`.
function quiet(client, ms = 500) {
  return new Promise((resolve, reject) => {
    const onMessage = (topic) => {
      clearTimeout(timer);
      reject(new Error(`unexpected message on ${topic}`));
    };
    const timer = setTimeout(() => {
      client.off('message', onMessage);
      resolve();
    }, ms);
    client.once('message', onMessage);
  });
}

const byTopic = (a, b) => a.topic.localeCompare(b.topic);

for (const transport of ['tcp', 'ws']) {
  for (const version of [4, 5]) {
    test(`${NAMES[version]} over ${transport}: QoS 0, 1 and 2`, async () => {
      const base = `node/${transport}/${version}`;
      const sub = await connect(transport, version);
      const granted = await sub.subscribeAsync({ [`${base}/high/#`]: { qos: 2 }, [`${base}/low/#`]: { qos: 1 } });
      assert.deepEqual(granted.map((g) => [g.topic, g.qos]), [[`${base}/high/#`, 2], [`${base}/low/#`, 1]]);
      const pub = await connect(transport, version);
      const received = collect(sub, 6);
      for (const qos of [0, 1, 2]) {
        await pub.publishAsync(`${base}/high/${qos}`, `h${qos}`, { qos });
        await pub.publishAsync(`${base}/low/${qos}`, `l${qos}`, { qos });
      }
      const got = (await received).sort(byTopic);
      assert.deepEqual(got.map((m) => [m.topic, m.payload, m.qos, m.retain]), [
        [`${base}/high/0`, 'h0', 0, false], [`${base}/high/1`, 'h1', 1, false], [`${base}/high/2`, 'h2', 2, false],
        // The subscription's QoS caps the delivery's.
        [`${base}/low/0`, 'l0', 0, false], [`${base}/low/1`, 'l1', 1, false], [`${base}/low/2`, 'l2', 1, false],
      ]);
      await quiet(sub);
    });
  }
}

test('across transports, both ways', async () => {
  const tcpSub = await connect('tcp', 5);
  await tcpSub.subscribeAsync('node/cross/from-ws', { qos: 1 });
  const wsSub = await connect('ws', 4);
  await wsSub.subscribeAsync('node/cross/from-tcp', { qos: 1 });
  const atTcp = collect(tcpSub, 1);
  const atWs = collect(wsSub, 1);
  await (await connect('tcp', 4)).publishAsync('node/cross/from-tcp', 'tcp', { qos: 1 });
  await (await connect('ws', 5)).publishAsync('node/cross/from-ws', 'ws', { qos: 1 });
  assert.equal((await atWs)[0].payload, 'tcp');
  assert.equal((await atTcp)[0].payload, 'ws');
});

test('MQTT 5 properties pass through', async () => {
  const sub = await connect('ws', 5);
  await sub.subscribeAsync('node/props', { qos: 1 });
  const received = collect(sub, 1);
  const pub = await connect('tcp', 5);
  await pub.publishAsync('node/props', '{"t":21}', {
    qos: 1,
    properties: {
      contentType: 'application/json',
      responseTopic: 'node/props/reply',
      correlationData: Buffer.from([0, 1, 2]),
      userProperties: { unit: 'C', tags: ['a', 'b'] },
    },
  });
  const [m] = await received;
  assert.equal(m.properties.contentType, 'application/json');
  assert.equal(m.properties.responseTopic, 'node/props/reply');
  assert.deepEqual([...m.properties.correlationData], [0, 1, 2]);
  assert.deepEqual({ ...m.properties.userProperties }, { unit: 'C', tags: ['a', 'b'] });
});

test('a retained message reaches later subscribers', async () => {
  const pub = await connect('tcp', 5);
  await pub.publishAsync('node/retained', 'kept', { qos: 1, retain: true });
  for (const [transport, version] of [['tcp', 4], ['ws', 5]]) {
    const sub = await connect(transport, version);
    const received = collect(sub, 1);
    await sub.subscribeAsync('node/#', { qos: 2 });
    const [m] = await received;
    assert.deepEqual([m.topic, m.payload, m.qos, m.retain], ['node/retained', 'kept', 1, true]);
  }
  // An empty retained payload clears it.
  await pub.publishAsync('node/retained', '', { qos: 1, retain: true });
  const late = await connect('ws', 4);
  await late.subscribeAsync('node/#', { qos: 1 });
  await quiet(late);
});
