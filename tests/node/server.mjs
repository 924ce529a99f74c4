// Starts `strata serve` on free ports with a fresh data directory, for one test file.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const handedOut = new Set();

function tryPort(port) {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(null));
    s.listen(port, '127.0.0.1', () => {
      const { port: bound } = s.address();
      s.close(() => resolve(bound));
    });
  });
}

// A free port below the ephemeral range (32768 and up on Linux), so that no client connection
// made meanwhile can take it before the server binds it.
async function freePort() {
  for (let i = 0; i < 500; i++) {
    const port = 10000 + Math.floor(Math.random() * 22000);
    if (handedOut.has(port)) continue;
    if ((await tryPort(port)) !== null) {
      handedOut.add(port);
      return port;
    }
  }
  return tryPort(0);
}

export async function startStrata() {
  const bin = process.env.STRATA_BIN;
  if (!bin) throw new Error('set STRATA_BIN to the strata binary');
  const dir = mkdtempSync(join(tmpdir(), 'strata-node-'));
  const kafkaPort = await freePort();
  const adminPort = await freePort();
  const mqttPort = await freePort();
  const mqttWsPort = await freePort();
  const proc = spawn(bin, [
    'serve', '--data-dir', join(dir, 'data'),
    '--kafka-addr', `127.0.0.1:${kafkaPort}`, '--admin-addr', `127.0.0.1:${adminPort}`,
    '--mqtt-addr', `127.0.0.1:${mqttPort}`, '--mqtt-ws-addr', `127.0.0.1:${mqttWsPort}`,
    '--group-initial-rebalance-delay-ms', '300',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`strata did not start:\n${log}`)), 60000);
    proc.stderr.on('data', (chunk) => {
      log += chunk;
      if (log.includes('strata listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.on('exit', (code) => reject(new Error(`strata exited with ${code}:\n${log}`)));
  });
  return {
    brokers: [`127.0.0.1:${kafkaPort}`],
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    mqttWsUrl: `ws://127.0.0.1:${mqttWsPort}/mqtt`,
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((resolve) => proc.on('exit', resolve));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
