// A 3-member cluster of the Go binary on loopback, for the tests. The
// binary is $CONSENSUS_BIN, or built from this repository once per run.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

// Ports are picked at random below the kernel's ephemeral range (as the Go
// tests' internal/loopback does), from a seeded generator: the seed is
// printed, and CONSENSUS_TEST_SEED replays it.
const seed = Number(process.env.CONSENSUS_TEST_SEED ?? (Date.now() % 2147483647));
console.log(`# cluster port seed ${seed} (CONSENSUS_TEST_SEED=${seed} replays it)`);
let state = seed || 1;
function random() {
  // xorshift32
  state ^= state << 13; state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5; state >>>= 0;
  return state / 0x100000000;
}

function canBind(port) {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

// given holds the ports handed out in this process: one is never handed
// out twice, since its node may not have bound it yet.
const given = new Set();

async function freeAddr() {
  for (let i = 0; i < 100; i++) {
    const port = 10000 + Math.floor(random() * 22000);
    if (given.has(port)) continue;
    if (await canBind(port)) {
      given.add(port);
      return `127.0.0.1:${port}`;
    }
  }
  throw new Error('no free loopback port found');
}

let builtBin;
/** binary returns the consensus binary, building it on first use. */
export function binary() {
  if (process.env.CONSENSUS_BIN) return resolve(process.env.CONSENSUS_BIN);
  if (builtBin) return builtBin;
  const dir = mkdtempSync(join(tmpdir(), 'consensus-js-bin-'));
  builtBin = join(dir, 'consensus');
  execFileSync('go', ['build', '-o', builtBin, './cmd/consensus'], { cwd: repoRoot, stdio: 'inherit', timeout: 300000 });
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return builtBin;
}

const live = new Set();
process.on('exit', () => {
  for (const p of live) { try { p.kill('SIGKILL'); } catch { /* gone */ } }
});

/** waitFor polls cond until it returns a truthy value or ms pass. */
export async function waitFor(what, cond, ms = 15000, every = 25) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

export class Cluster {
  /**
   * extraArgs are added to every member's `consensus serve` flags; token
   * is the one the harness's own status requests carry.
   */
  constructor(n = 3, extraArgs = [], { token } = {}) {
    this.extraArgs = extraArgs;
    this.token = token;
    this.ids = Array.from({ length: n }, (_, i) => `node-${i + 1}`);
    this.peer = {};
    this.http = {};
    this.procs = {};
    this.logs = {};
    this.root = mkdtempSync(join(tmpdir(), 'consensus-js-'));
  }

  /** start starts every member and waits until all agree on a leader. */
  async start() {
    const bin = binary();
    for (const id of this.ids) {
      this.peer[id] = await freeAddr();
      this.http[id] = await freeAddr();
    }
    for (const id of this.ids) this.startMember(id, bin);
    await this.waitLeader();
    return this;
  }

  startMember(id, bin = binary()) {
    const peers = this.ids.map((p) => `${p}=${this.peer[p]}`).join(',');
    const p = spawn(bin, ['serve', '--id', id, '--listen', this.peer[id], '--http', this.http[id],
      '--peers', peers, '--data', join(this.root, id), '--log-level', 'info', ...this.extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.logs[id] = '';
    const keep = (b) => { this.logs[id] = (this.logs[id] + b).slice(-20000); };
    p.stdout.on('data', keep);
    p.stderr.on('data', keep);
    live.add(p);
    p.on('exit', () => live.delete(p));
    this.procs[id] = p;
  }

  /** endpoints are the members' HTTP addresses. */
  get endpoints() {
    return this.ids.map((id) => this.http[id]);
  }

  async status(id) {
    const headers = this.token ? { Authorization: `Bearer ${this.token}` } : {};
    const res = await fetch(`http://${this.http[id]}/v1/status`, { headers, signal: AbortSignal.timeout(1000) });
    return res.json();
  }

  /** waitLeader resolves with the leader's id once every running member names the same one. */
  async waitLeader(ms = 20000) {
    return waitFor('a leader all members agree on', async () => {
      const running = this.ids.filter((id) => this.procs[id]);
      const leaders = await Promise.all(running.map((id) => this.status(id).then((s) => s.leaderId, () => '')));
      return leaders.every((l) => l && l === leaders[0]) && this.procs[leaders[0]] ? leaders[0] : null;
    }, ms);
  }

  /** kill sends SIGKILL to member id and waits for it to exit. */
  async kill(id) {
    const p = this.procs[id];
    if (!p) return;
    delete this.procs[id];
    if (p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await exited;
    }
  }

  async stop() {
    await Promise.all(this.ids.map((id) => this.kill(id)));
    rmSync(this.root, { recursive: true, force: true });
  }

  /** dumpLogs prints the members' logs (for a failed test). */
  dumpLogs() {
    for (const id of this.ids) console.log(`---- log of ${id} ----\n${this.logs[id] ?? ''}`);
  }
}

