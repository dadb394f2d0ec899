#!/usr/bin/env node
// The JavaScript client's load generator: the cells of `consensus bench`
// (package bench) with this package's Client instead of the Go client, so
// the two can be put side by side on the same cluster (scripts/bench-js.sh,
// `make bench-js`).
//
// Each cell is one workload (write, or read: linearizable) at one
// concurrency: that many async loops, each with one request in flight, on
// one Client (one multiplexed /v1/ws connection, as the Go bench shares one
// connection between its goroutines), talking to the leader, on keys drawn
// at random from a key space of --keys keys (bench/000000...) with values
// that are a JSON string of --value-size bytes. An unmeasured warm-up, then
// --duration measured; reads run on a preloaded key space. Latencies are
// kept per operation; percentiles are nearest-rank, as Go's.
//
// Usage: node bench/load.js --endpoints h:p,h:p,h:p [--workloads write,read]
//   [--concurrency 1,64,256] [--duration 5] [--warmup 0.5] [--keys 1000]
//   [--value-size 100] [--timeout 5] [--seed N] [--json]
// (times in seconds). It prints a table, or with --json the JSON report
// `consensus bench --json` prints, with protocol "js".

import { createClient } from '../src/index.js';

function parseArgs(argv) {
  const o = {
    endpoints: '', workloads: 'write,read', concurrency: '1,64,256', duration: 5, warmup: 0.5,
    keys: 1000, 'value-size': 100, timeout: 5, seed: Date.now() % 2147483647, json: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const name = a.slice(2);
    if (!(name in o)) throw new Error(`unknown flag ${a}`);
    if (typeof o[name] === 'boolean') { o[name] = true; continue; }
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    o[name] = typeof o[name] === 'number' ? Number(v) : v;
    if (Number.isNaN(o[name])) throw new Error(`${a}: not a number: ${v}`);
  }
  if (!o.endpoints) throw new Error('--endpoints is required');
  o.workloads = o.workloads.split(',');
  for (const w of o.workloads) if (w !== 'write' && w !== 'read') throw new Error(`workload ${w}: want write or read`);
  o.concurrency = o.concurrency.split(',').map(Number);
  if (o.concurrency.some((c) => !Number.isInteger(c) || c < 1)) throw new Error('--concurrency: want positive integers');
  return o;
}

// A seeded generator (xorshift32), so a run's keys can be replayed.
function rng(seed) {
  let s = seed || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 0x100000000;
  };
}

const key = (i) => `bench/${String(i).padStart(6, '0')}`;

// value is a JSON string of exactly size bytes, as bench.Value.
function value(size) {
  let s = '';
  for (let i = 1; i < Math.max(size, 2) - 1; i++) s += String.fromCharCode(97 + (i % 26));
  return s;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  const rank = Math.min(Math.max(Math.ceil((p / 100) * sorted.length), 1), sorted.length);
  return sorted[rank - 1];
}

// leaderEndpoint returns the leader's HTTP address, asking the members in turn.
async function leaderEndpoint(endpoints) {
  for (const ep of endpoints) {
    try {
      const st = await (await fetch(`http://${ep}/v1/status`, { signal: AbortSignal.timeout(2000) })).json();
      const addr = st.members?.find((m) => m.id === st.leaderId)?.httpAddr;
      if (addr) return addr;
    } catch { /* the next */ }
  }
  throw new Error(`no member of ${endpoints} names a leader`);
}

async function runCell(client, o, workload, concurrency, val, random) {
  const op = workload === 'write'
    ? () => client.put(key(Math.floor(random() * o.keys)), val)
    : () => client.get(key(Math.floor(random() * o.keys)));
  const start = performance.now();
  const measureFrom = start + o.warmup * 1000;
  const end = measureFrom + o.duration * 1000;
  const samples = [];
  let errors = 0;
  let firstError;
  async function loop() {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= end) return;
      try {
        await op();
        const t1 = performance.now();
        if (t0 >= measureFrom && t1 <= end) samples.push(t1 - t0);
      } catch (e) {
        if (t0 >= measureFrom) { errors++; firstError ??= `${e.code}: ${e.message}`; }
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, loop));
  samples.sort((a, b) => a - b);
  const ns = (ms) => Math.round(ms * 1e6);
  const seconds = o.duration;
  return {
    protocol: 'js', workload, concurrency, valueSize: o['value-size'], seconds,
    ops: samples.length, errors, opsPerSec: samples.length / seconds,
    latency: { p50Ns: ns(percentile(samples, 50)), p90Ns: ns(percentile(samples, 90)), p99Ns: ns(percentile(samples, 99)), maxNs: ns(samples.at(-1) ?? 0) },
    ...(firstError ? { firstError } : {}),
  };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const random = rng(o.seed);
  const leader = await leaderEndpoint(o.endpoints.split(','));
  const client = createClient({ endpoints: [leader], requestTimeout: o.timeout * 1000, leaderRefresh: -1 });
  const val = value(o['value-size']);
  const results = [];
  try {
    if (o.workloads.includes('read')) {
      // Preload the key space, 64 at a time.
      let next = 0;
      await Promise.all(Array.from({ length: 64 }, async () => {
        while (next < o.keys) await client.put(key(next++), val);
      }));
    }
    for (const w of o.workloads) {
      for (const c of o.concurrency) {
        const r = await runCell(client, o, w, c, val, random);
        results.push(r);
        process.stderr.write(`js ${w} c=${c}: ${Math.round(r.opsPerSec)} ops/s, p50 ${(r.latency.p50Ns / 1e6).toFixed(2)} ms, ${r.errors} errors\n`);
      }
    }
  } finally {
    client.close();
  }
  const report = { system: 'consensus', seed: o.seed, node: process.version, results };
  if (o.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  console.log(`# seed ${o.seed} (--seed ${o.seed} replays the keys), leader ${leader}, Node ${process.version}`);
  console.log('workload  c     ops/s      p50 ms   p99 ms   errors');
  for (const r of results) {
    console.log(`${r.workload.padEnd(9)} ${String(r.concurrency).padEnd(5)} ${String(Math.round(r.opsPerSec)).padStart(8)}  `
      + `${(r.latency.p50Ns / 1e6).toFixed(2).padStart(7)}  ${(r.latency.p99Ns / 1e6).toFixed(2).padStart(7)}  ${r.errors}`);
  }
}

main().catch((e) => {
  console.error(`bench: ${e.message}`);
  process.exit(1);
});
