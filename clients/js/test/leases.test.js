// Leases, sessions, fenced locks and elections against a 3-member cluster.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Cluster, waitFor } from './cluster.js';
import { createClient, ConsensusError, Session } from '../src/index.js';

let cluster;
let client;

before(async () => {
  cluster = await new Cluster(3).start();
  client = createClient({ endpoints: cluster.endpoints, requestTimeout: 5000 });
});

after(async () => {
  client?.close();
  await cluster?.stop();
});

test('leases: grant, put with a lease, keepAlive, timeToLive, list, revoke', async () => {
  const lease = await client.grant(60000);
  assert.match(lease.id, /^[0-9a-f]{1,16}$/);
  assert.equal(lease.ttlMs, 60000);
  const rev = await client.put('leased:a', { v: 1 }, { lease: lease.id });
  assert.equal((await client.get('leased:a')).lease, lease.id);
  const kept = await client.keepAlive(lease.id);
  assert.equal(kept.id, lease.id);
  assert.ok(kept.remainingMs > 0 && kept.remainingMs <= 60000, JSON.stringify(kept));
  const ttl = await client.timeToLive(lease.id);
  assert.deepEqual(ttl.keys, ['leased:a']);
  assert.ok(ttl.remainingMs > 0);
  assert.ok((await client.leases()).some((l) => l.id === lease.id && l.ttlMs === 60000));
  // A lease id above 2^53 (the server's ids are 63 bits) keeps every bit.
  const big = await client.grant(60000, { id: '7fffffffffffff01' });
  assert.equal(big.id, '7fffffffffffff01');
  assert.equal((await client.timeToLive(big.id)).id, '7fffffffffffff01');
  await client.revoke(big.id);
  // Revoking deletes the lease's keys, at one revision after the put's.
  const revoked = await client.revoke(lease.id);
  assert.ok(revoked > rev);
  await assert.rejects(client.get('leased:a'), (e) => e.code === 'key_not_found');
  await assert.rejects(client.keepAlive(lease.id), (e) => e instanceof ConsensusError && e.code === 'lease_not_found');
  await assert.rejects(client.timeToLive(lease.id), (e) => e.code === 'lease_not_found');
  await assert.rejects(client.revoke(lease.id), (e) => e.code === 'lease_not_found' && !e.outcomeUnknown);
});

test('a key with a time to live of its own expires; a short grant is raised to the floor', async () => {
  await client.put('ttl:a', 1, { ttlMs: 1000 });
  assert.ok((await client.get('ttl:a')).lease);
  const lease = await client.grant(1);
  assert.equal(lease.ttlMs, 1000, 'the cluster raises a TTL below 1 s to 1 s');
  await waitFor('the key to expire', async () => {
    try { await client.get('ttl:a'); return false; } catch (e) { return e.code === 'key_not_found'; }
  }, 10000);
});

test('bad lease input is a typed error before anything is sent', async () => {
  await assert.rejects(client.grant(0), (e) => e.code === 'invalid_lease');
  await assert.rejects(client.grant(31 * 24 * 3600 * 1000), (e) => e.code === 'invalid_lease');
  await assert.rejects(client.keepAlive('xyz'), (e) => e.code === 'invalid_lease');
  await assert.rejects(client.keepAlive('0'), (e) => e.code === 'invalid_lease');
  await assert.rejects(client.revoke('8000000000000000'), (e) => e.code === 'invalid_lease');
  await assert.rejects(client.put('k', 1, { lease: 'a', ttlMs: 1000 }), (e) => e.code === 'invalid_lease');
  await assert.rejects(client.put('k', 1, { lease: 'abc123' }), (e) => e.code === 'lease_not_found');
  await assert.rejects(client.acquire('l', 'abc', { waitMs: -1 }), (e) => e.code === 'bad_request');
  await assert.rejects(client.release('l', 0), (e) => e.code === 'bad_request');
  await assert.rejects(client.put('k', 1, { fence: { lock: 'l' } }), (e) => e.code === 'bad_request');
  assert.throws(() => Session.keep(client, { id: 'abc' }), (e) => e.code === 'bad_request');
});

test('a session keeps its lease alive past its TTL, and close revokes it', async () => {
  const s = await client.session(1500);
  assert.equal(s.ttlMs, 1500);
  await client.put('session:a', 'x', { lease: s.lease });
  // Twice the TTL and more: without the keepalives the key would be gone.
  const until = Date.now() + 3500;
  await waitFor('more than two TTLs', () => Date.now() >= until, 6000, 100);
  assert.equal(s.err, null);
  assert.equal((await client.get('session:a')).value, 'x');
  await s.close();
  assert.equal(s.err.code, 'session_closed');
  assert.ok(s.signal.aborted);
  await assert.rejects(client.get('session:a'), (e) => e.code === 'key_not_found');
  await s.close(); // again: nothing
});

test('a session whose lease is revoked reports the loss', async () => {
  const s = await client.session(3000);
  const lost = [];
  s.on('lost', (e) => lost.push(e));
  await client.revoke(s.lease);
  const err = await s.done;
  assert.equal(err.code, 'lease_not_found');
  assert.equal(lost.length, 1);
  assert.ok(s.signal.aborted);
  await s.close(); // the lease is gone already: not an error
});

test('a session ends no later than its lease can expire when the cluster cannot be reached', async () => {
  // A client whose only endpoint is a port nobody listens on... after the
  // grant: keep a lease granted elsewhere, as if the network went away.
  const lease = await client.grant(1000);
  const gone = createClient({ endpoints: ['127.0.0.1:1'], requestTimeout: 500, dialTimeout: 200, leaderRefresh: -1 });
  try {
    const t0 = Date.now();
    const s = Session.keep(gone, lease, t0);
    const err = await s.done;
    assert.equal(err.code, 'session_expired');
    const took = Date.now() - t0;
    // The TTL, and slack for timers on a loaded machine.
    assert.ok(took >= 1000 && took <= 1000 + 1000, `ended ${took} ms after the keepalive clock started (TTL 1000)`);
  } finally {
    gone.close();
  }
});

test('closing the client ends its sessions', async () => {
  const c = createClient({ endpoints: cluster.endpoints });
  const s = await c.session(60000);
  c.close();
  assert.equal((await s.done).code, 'closed');
});

test('locks: mutual exclusion, increasing tokens, a dead holder loses the lock', async () => {
  const a = createClient({ endpoints: cluster.endpoints });
  const b = createClient({ endpoints: cluster.endpoints });
  try {
    const sa = await a.session(2000);
    const sb = await b.session(10000);
    const la = await sa.lock('jobs');
    assert.ok(la.token > 0 && la.lease === sa.lease, JSON.stringify(la));
    // The same lease asking again gets the same token.
    assert.equal((await sa.lock('jobs')).token, la.token);
    await assert.rejects(sb.tryLock('jobs'), (e) => e.code === 'locked' && !e.outcomeUnknown);
    const state = await client.lockState('jobs');
    assert.equal(state.token, la.token);
    assert.equal(state.lease, sa.lease);
    // A write fenced by the holder's token applies.
    await a.put('jobs:out', 'a', { fence: { lock: 'jobs', token: la.token } });

    // b waits; a's process dies (its client closes without revoking): the
    // keepalives stop, the lease expires after its TTL, and b gets the lock.
    let holder = 'a';
    const waiting = sb.lock('jobs', { waitMs: 20000 }).then((l) => { assert.equal(holder, 'none'); holder = 'b'; return l; });
    await waitFor('b to wait in the queue', async () => (await client.lockState('jobs')).waiters === 1);
    holder = 'none';
    a.close();
    assert.equal((await sa.done).code, 'closed');
    const lb = await waiting;
    assert.ok(lb.token > la.token, `token ${lb.token} after ${la.token}`);
    assert.equal(lb.lease, sb.lease);
    // The dead holder's token no longer fences a write: a paused process
    // that wakes up is refused.
    await assert.rejects(b.put('jobs:out', 'late a', { fence: { lock: 'jobs', token: la.token } }),
      (e) => e.code === 'fenced' && !e.outcomeUnknown);
    await b.put('jobs:out', 'b', { fence: { lock: 'jobs', token: lb.token } });
    assert.equal((await client.get('jobs:out')).value, 'b');
    await assert.rejects(b.release('jobs', la.token), (e) => e.code === 'not_holder');
    await b.release('jobs', lb.token);
    await assert.rejects(client.lockState('jobs'), (e) => e.code === 'lock_not_found');
    await sb.close();
  } finally {
    a.close();
    b.close();
  }
});

test('an acquire abandoned by its signal rejects canceled at once; the server may still grant it', async () => {
  const holder = await client.session(10000);
  const waiter = await client.session(10000);
  try {
    const held = await holder.lock('abandoned');
    const ac = new AbortController();
    const waiting = waiter.lock('abandoned', { waitMs: 20000, signal: ac.signal });
    await waitFor('the waiter in the queue', async () => (await client.lockState('abandoned')).waiters === 1);
    ac.abort(new Error('gave up'));
    await assert.rejects(waiting, (e) => e.code === 'canceled' && e.outcomeUnknown);
    // The server still has the waiter's lease in the queue (README: the
    // signal stops the wait here only): releasing hands it the lock.
    await client.release('abandoned', held.token);
    const now = await client.lockState('abandoned');
    assert.equal(now.lease, waiter.lease);
  } finally {
    await holder.close();
    await waiter.close();
  }
  await assert.rejects(client.lockState('abandoned'), (e) => e.code === 'lock_not_found');
});

test('locks: contenders never overlap, and every token is higher than the last', async () => {
  const contenders = 4;
  const rounds = 3;
  const clients = Array.from({ length: contenders }, () => createClient({ endpoints: cluster.endpoints }));
  try {
    const sessions = await Promise.all(clients.map((c) => c.session(10000)));
    let inside = 0;
    let maxInside = 0;
    const tokens = [];
    await Promise.all(sessions.map(async (s, i) => {
      for (let r = 0; r < rounds; r++) {
        const l = await s.lock('mutex', { waitMs: 20000 });
        inside++;
        maxInside = Math.max(maxInside, inside);
        tokens.push(l.token);
        // Hold it across a round trip, so an overlap would show.
        await clients[i].put('mutex:holder', i, { fence: { lock: 'mutex', token: l.token } });
        inside--;
        await clients[i].release('mutex', l.token);
      }
    }));
    assert.equal(maxInside, 1);
    assert.equal(tokens.length, contenders * rounds);
    for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i] > tokens[i - 1], `tokens ${tokens}`);
    await Promise.all(sessions.map((s) => s.close()));
  } finally {
    for (const c of clients) c.close();
  }
});

test('elections: campaign, leader, proclaim, observe, resign', async () => {
  const a = await client.session(10000);
  const b = await client.session(10000);
  const seen = [];
  const o = client.observe('primary');
  o.on('leader', (l) => seen.push(l));
  try {
    await o.ready;
    await waitFor('the observer\'s first event (no leader)', () => seen.length >= 1);
    assert.equal(seen[0], null);
    const la = await a.campaign('primary', { addr: 'a:1' });
    assert.deepEqual(la.value, { addr: 'a:1' });
    await assert.rejects(b.campaign('primary', { addr: 'b:1' }), (e) => e.code === 'locked');
    const leader = await client.leader('primary');
    assert.equal(leader.token, la.token);
    assert.deepEqual(leader.value, { addr: 'a:1' });
    await client.proclaim('primary', la.token, { addr: 'a:2' });
    assert.deepEqual((await client.leader('primary')).value, { addr: 'a:2' });
    // Changes close together may reach an observer as their last state:
    // see this one before the next.
    await waitFor('the observer to see the proclamation', () => seen.at(-1)?.value?.addr === 'a:2');
    const next = b.campaign('primary', { addr: 'b:1' }, { waitMs: 20000 });
    await waitFor('b to wait', async () => (await client.leader('primary')).waiters === 1);
    await client.resign('primary', la.token);
    const lb = await next;
    assert.ok(lb.token > la.token);
    await assert.rejects(client.proclaim('primary', la.token, 'x'), (e) => e.code === 'not_holder');
    await waitFor('the observer to see b lead', () => seen.at(-1)?.token === lb.token);
    // Tokens never go back, and no leader is reported twice in a row.
    const tokens = seen.filter(Boolean).map((l) => l.token);
    for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i] >= tokens[i - 1]);
    assert.deepEqual(seen.at(-1).value, { addr: 'b:1' });
    await b.close();
    await waitFor('the observer to see no leader', () => seen.at(-1) === null);
  } finally {
    o.close();
    await a.close();
    await b.close();
  }
});

test('the coordination example runs: a session, a fenced lock, an election, a worker', async () => {
  const script = fileURLToPath(new URL('../examples/coordination.js', import.meta.url));
  const stdout = await new Promise((resolve, reject) => {
    execFile(process.execPath, [script], {
      env: { ...process.env, CONSENSUS_ENDPOINTS: cluster.endpoints.join(',') },
      timeout: 30000,
    }, (err, out, stderr) => (err ? reject(new Error(`${err.message}\n${out}\n${stderr}`)) : resolve(out)));
  });
  assert.match(stdout, /lock reports held, token \d+/);
  assert.match(stdout, /leader: \{"addr":"127.0.0.1:7001"\}/);
  assert.equal(stdout.match(/: completed/g)?.length, 3, stdout);
  assert.match(stdout, /done\n$/);
  await assert.rejects(client.get('services/report-writer'), (e) => e.code === 'key_not_found');
  assert.deepEqual((await client.get('reports/latest')).value.by > 0, true);
});
