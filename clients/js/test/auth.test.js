import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, waitFor } from './cluster.js';
import { createClient, createDistributedStateMachine } from '../src/index.js';

const RW = 'js-test-rw-token-0123456789';
const RO = 'js-test-ro-token-0123456789';
let cluster;
let dir;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'consensus-js-auth-'));
  const file = join(dir, 'tokens');
  writeFileSync(file, `${RW} rw\n${RO} ro\n`, { mode: 0o600 });
  cluster = await new Cluster(3, ['--auth-token-file', file], { token: RO }).start();
});

after(async () => {
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('tokens: none is unauthorized (not retried), read-only cannot write, read-write can, watches too', async () => {
  const none = createClient({ endpoints: cluster.endpoints });
  const ro = createClient({ endpoints: cluster.endpoints, token: RO });
  const state = createDistributedStateMachine({ endpoints: cluster.endpoints, token: RW });
  try {
    const t0 = Date.now();
    await assert.rejects(none.get('k'), (e) => e.code === 'unauthorized' && !e.outcomeUnknown);
    assert.ok(Date.now() - t0 < 2000, 'refused at once, not after retries');
    await assert.rejects(ro.put('k', 1), (e) => e.code === 'forbidden' && !e.outcomeUnknown);
    const seen = [];
    state.on('state_changed', (e) => seen.push(e.key));
    await state.initialize();
    await state.set('k', 1);
    assert.equal((await ro.get('k')).value, 1);
    assert.equal((await state.getStats()).keys, 1);
    await waitFor('the change on the watch', () => seen.includes('k'));
  } finally {
    none.close();
    ro.close();
    await state.shutdown();
  }
});
