import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocketServer, WebSocket } from 'ws';
import { unpack } from 'msgpackr';
import { Cluster, waitFor } from './cluster.js';
import { createDistributedStateMachine, createClient } from '../src/index.js';

let cluster;

before(async () => {
  cluster = await new Cluster(3).start();
});

after(async () => {
  await cluster?.stop();
});

test('leader routing: calls move to the leader\'s endpoint', async () => {
  const leader = await cluster.waitLeader();
  const order = [...cluster.ids.filter((id) => id !== leader), leader];
  const client = createClient({ endpoints: order.map((id) => cluster.http[id]), leaderRefresh: 20 });
  try {
    assert.equal((await client.status()).isLeader, false, 'the first call goes to the first endpoint, a follower');
    await waitFor('a call served by the leader', async () => (await client.status()).isLeader);
  } finally {
    client.close();
  }
});

test('a write lost with its connection is retried with the same request id and applied once', async () => {
  // A proxy in front of one member forwards the first put, then drops the
  // connection before its answer reaches the client.
  const upstream = `ws://${cluster.http['node-1']}/v1/ws`;
  const puts = [];
  let dropped = false;
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  wss.on('connection', (down) => {
    const up = new WebSocket(upstream, { perMessageDeflate: false });
    const queued = [];
    up.on('open', () => { for (const m of queued.splice(0)) up.send(m); });
    let putSent = false;
    down.on('message', (m) => {
      const [, reqs] = unpack(m);
      for (const r of reqs) {
        if (r[1] === 1) { puts.push(r[4]); putSent = true; }
      }
      if (up.readyState === WebSocket.OPEN) up.send(m); else queued.push(m);
    });
    up.on('message', (m) => {
      if (putSent && !dropped) {
        dropped = true;
        down.terminate();
        up.close();
        return;
      }
      down.send(m);
    });
    down.on('close', () => up.close());
    up.on('close', () => down.close());
    up.on('error', () => down.terminate());
  });
  const proxy = `127.0.0.1:${wss.address().port}`;
  const client = createClient({ endpoints: [proxy], clientId: 'js-exactly-once' });
  try {
    const rev = await client.put('once', { n: 1 });
    assert.equal(dropped, true, 'the proxy dropped an answer');
    assert.equal(puts.length, 2, 'the put was sent twice');
    assert.deepEqual(puts[0], puts[1], 'with the same request id');
    assert.equal(puts[0][0], 'js-exactly-once');
    const item = await client.get('once');
    assert.equal(item.version, 1, 'applied once');
    assert.equal(item.revision, rev, 'the retry got the first attempt\'s revision');
  } finally {
    client.close();
    for (const c of wss.clients) c.terminate();
    await new Promise((r) => wss.close(r));
  }
});

test('the leader killed: writes go on through the other members, and state_changed misses nothing', async () => {
  const leader = await cluster.waitLeader();
  // The watch and the writes start on the leader's endpoint.
  const order = [leader, ...cluster.ids.filter((id) => id !== leader)];
  const state = createDistributedStateMachine({ endpoints: order.map((id) => cluster.http[id]), requestTimeout: 8000 });
  const seen = [];
  state.on('state_changed', (e) => { if (e.key.startsWith('fo:')) seen.push(e.value); });
  await state.initialize();
  try {
    for (let i = 0; i < 5; i++) await state.set(`fo:${i}`, i);
    const t0 = Date.now();
    await cluster.kill(leader);
    for (let i = 5; i < 10; i++) await state.set(`fo:${i}`, i);
    console.log(`# 5 writes after kill -9 of the leader took ${Date.now() - t0} ms`);
    assert.deepEqual(await state.values('fo:'), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await waitFor('every change once, across the failover', () => seen.length >= 10);
    assert.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  } finally {
    await state.shutdown();
  }
});

test('no member reachable: a read fails unavailable, a write is not reported applied', async () => {
  const client = createClient({ endpoints: ['127.0.0.1:1'], requestTimeout: 2000, maxAttempts: 3 });
  try {
    await assert.rejects(client.get('k'), (e) => e.code === 'unavailable' && e.outcomeUnknown === false);
    await assert.rejects(client.put('k', 1), (e) => e.code === 'unavailable' && e.outcomeUnknown === false);
  } finally {
    client.close();
  }
  await assert.rejects(client.get('k'), (e) => e.code === 'closed');
});
