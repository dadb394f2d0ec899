import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, waitFor } from './cluster.js';
import { createDistributedStateMachine, createClient, ConsensusError } from '../src/index.js';

let cluster;
let state;

before(async () => {
  // A low snapshot threshold, so that a test can see snapshot_created.
  cluster = await new Cluster(3, ['--snapshot-threshold', '50']).start();
  state = createDistributedStateMachine({ endpoints: cluster.endpoints, requestTimeout: 5000 });
  await state.initialize();
});

after(async () => {
  await state?.shutdown();
  await cluster?.stop();
});

test('set, get, has, delete: the seed\'s calls, linearizable and local', async () => {
  const rev = await state.set('workflow:123', { status: 'running', progress: 0.5 });
  assert.ok(Number.isInteger(rev) && rev > 0);
  assert.deepEqual(await state.get('workflow:123'), { status: 'running', progress: 0.5 });
  // A local read on another member sees the write once that member applied it.
  const other = createDistributedStateMachine({ endpoints: [cluster.endpoints[2]] });
  try {
    await waitFor('the write on the third member', async () =>
      (await other.get('workflow:123', { consistency: 'local' }))?.progress === 0.5);
  } finally {
    await other.shutdown();
  }
  assert.equal(await state.has('workflow:123'), true);
  assert.equal(await state.has('nope'), false);
  assert.equal(await state.get('nope'), undefined);
  assert.equal(await state.delete('workflow:123'), true);
  assert.equal(await state.delete('workflow:123'), false);
  assert.equal(await state.get('workflow:123'), undefined);
});

test('update is a compare-and-set loop: concurrent increments all count', async () => {
  await state.set('counter', 0);
  const writers = Array.from({ length: 5 }, () => createDistributedStateMachine({ endpoints: cluster.endpoints }));
  let runs = 0;
  try {
    await Promise.all(writers.flatMap((w) => Array.from({ length: 4 }, () =>
      w.update('counter', (n) => { runs++; return n + 1; }))));
  } finally {
    await Promise.all(writers.map((w) => w.shutdown()));
  }
  assert.equal(await state.get('counter'), 20);
  assert.ok(runs >= 20, `fn ran ${runs} times`);
  // A missing key is undefined to fn, and created only if still missing.
  assert.equal(await state.update('fresh', (v) => (v === undefined ? 'made' : 'again')), 'made');
  assert.equal(await state.get('fresh'), 'made');
});

test('batchUpdate is atomic: all changes at one revision, or none', async () => {
  const rev = await state.batchUpdate([
    { key: 'workflow:1', value: { status: 'completed' } },
    { key: 'workflow:2', value: { status: 'failed' } },
    { key: 'workflow:3', value: { status: 'running', progress: 0.75 } },
  ]);
  const client = createClient({ endpoints: cluster.endpoints });
  try {
    for (const k of ['workflow:1', 'workflow:2', 'workflow:3']) {
      assert.equal((await client.get(k)).revision, rev);
    }
    // One change that cannot apply (a stale revision) stops them all.
    await assert.rejects(state.batchUpdate([
      { key: 'workflow:1', value: { status: 'x' } },
      { key: 'workflow:2', value: { status: 'x' }, ifRevision: 1 },
    ]), (e) => e instanceof ConsensusError && e.code === 'precondition_failed');
    assert.deepEqual(await state.get('workflow:1'), { status: 'completed' });
  } finally {
    client.close();
  }
});

test('keys, values, entries list in key order, with a prefix', async () => {
  await state.batchUpdate([
    { key: 'list:b', value: 2 }, { key: 'list:a', value: 1 }, { key: 'list:c', value: 3 },
  ]);
  assert.deepEqual(await state.keys('list:'), ['list:a', 'list:b', 'list:c']);
  assert.deepEqual(await state.values('list:'), [1, 2, 3]);
  assert.deepEqual(await state.entries('list:'), [['list:a', 1], ['list:b', 2], ['list:c', 3]]);
  assert.ok((await state.keys()).includes('list:a'));
  const stats = await state.getStats();
  assert.ok(stats.keys >= 3 && stats.stateSize === stats.keys, JSON.stringify(stats));
});

test('a list larger than one frame is read whole, in pages at one revision', async () => {
  // 2,500 values of 2 kB: 5 MB, more than a 4 MiB frame (operation 4
  // would answer too_large), read as pages (operation 30).
  const pad = 'x'.repeat(2000);
  for (let b = 0; b < 5; b++) {
    const changes = [];
    for (let i = b * 500; i < (b + 1) * 500; i++) {
      changes.push({ key: `paged:${String(i).padStart(5, '0')}`, value: { i, pad } });
    }
    await state.batchUpdate(changes);
  }
  const keys = await state.keys('paged:');
  assert.equal(keys.length, 2500);
  assert.equal(keys[0], 'paged:00000');
  assert.equal(keys[2499], 'paged:02499');
  assert.ok(keys.every((k, i) => i === 0 || keys[i - 1] < k), 'in key order, each once');
  const values = await state.values('paged:');
  assert.equal(values.length, 2500);
  assert.equal(values[1234].i, 1234);
});

test('state_changed reports every write after initialize, in order', async () => {
  const seen = [];
  const listener = (e) => { if (e.key.startsWith('events:')) seen.push(e); };
  state.on('state_changed', listener);
  try {
    await state.set('events:a', 1);
    await state.set('events:a', 2);
    await state.delete('events:a');
    await waitFor('three state_changed events', () => seen.length >= 3);
    assert.deepEqual(seen.map(({ key, value, operation }) => ({ key, value, operation })), [
      { key: 'events:a', value: 1, operation: 'set' },
      { key: 'events:a', value: 2, operation: 'set' },
      { key: 'events:a', value: undefined, operation: 'delete' },
    ]);
    assert.ok(seen[0].revision < seen[1].revision && seen[1].revision < seen[2].revision);
  } finally {
    state.off('state_changed', listener);
  }
});

test('bad input is a typed error, not a crash', async () => {
  await assert.rejects(state.set('', 1), (e) => e instanceof ConsensusError && e.code === 'invalid_key');
  await assert.rejects(state.set('k', undefined), (e) => e instanceof ConsensusError && e.code === 'invalid_json');
  await assert.rejects(state.set('bad\u0001key', 1), (e) => e.code === 'invalid_key' && !e.outcomeUnknown);
  await assert.rejects(state.get('k', { consistency: 'eventual' }), (e) => e.code === 'bad_request');
  await assert.rejects(state.batchUpdate('no'), (e) => e.code === 'bad_request');
  await assert.rejects(state.update('k', 'no'), (e) => e.code === 'bad_request');
  assert.throws(() => createClient({}), (e) => e.code === 'bad_request');
  assert.throws(() => createClient({ endpoints: ['ftp://x'] }), (e) => e.code === 'bad_request');
  // A value over the server's limit (1 MiB) is refused by the server, and the connection stays up.
  await assert.rejects(state.set('big', 'x'.repeat((1 << 20) + 10)), (e) => e.code === 'too_large');
  assert.equal(await state.set('after-big', 1) > 0, true);
});

test('snapshot_created reports the member\'s snapshots', async () => {
  const watcher = createDistributedStateMachine({ endpoints: cluster.endpoints, pollInterval: 50 });
  await watcher.initialize();
  const snapshots = [];
  watcher.on('snapshot_created', (e) => snapshots.push(e));
  try {
    // More than the threshold's worth of entries, sent concurrently.
    await Promise.all(Array.from({ length: 120 }, (_, i) => state.set(`snap:${i}`, i)));
    await waitFor('a snapshot_created event', () => snapshots.length > 0);
    const s = snapshots[0];
    assert.ok(s.index > 0 && s.stateSize > 0 && typeof s.snapshotId === 'string' && s.nodeId, JSON.stringify(s));
  } finally {
    await watcher.shutdown();
  }
});
