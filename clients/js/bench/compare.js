#!/usr/bin/env node
// Prints the table of scripts/bench-js.sh: for each workload and
// concurrency, the Go client's and the JS client's ops/s and p50 over the
// rounds (DIR/go-N.json and DIR/js-N.json, N = 1..RUNS) as min-max, and the
// JS/Go ratio of each round.
//
// Usage: node bench/compare.js DIR RUNS

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, runsArg] = process.argv.slice(2);
const runs = Number(runsArg);
if (!dir || !Number.isInteger(runs) || runs < 1) {
  console.error('usage: compare.js DIR RUNS');
  process.exit(2);
}

const load = (name) => JSON.parse(readFileSync(join(dir, name), 'utf8')).results;
const cell = (results, w, c) => results.find((r) => r.workload === w && r.concurrency === c);

const rounds = Array.from({ length: runs }, (_, i) => ({ go: load(`go-${i + 1}.json`), js: load(`js-${i + 1}.json`) }));
const cells = rounds[0].js.map((r) => [r.workload, r.concurrency]);
const range = (xs, f) => {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return lo === hi ? f(lo) : `${f(lo)}-${f(hi)}`;
};
const ops = (x) => Math.round(x).toLocaleString('en-US');
const ms = (ns) => (ns / 1e6).toFixed(2);

console.log('| workload | c | Go client ops/s | JS client ops/s | JS/Go per round | Go p50 ms | JS p50 ms | errors (Go / JS) |');
console.log('|---|---|---|---|---|---|---|---|');
for (const [w, c] of cells) {
  const g = rounds.map((r) => cell(r.go, w, c));
  const j = rounds.map((r) => cell(r.js, w, c));
  if (g.some((x) => !x) || j.some((x) => !x)) continue;
  const ratios = g.map((x, i) => `${(j[i].opsPerSec / x.opsPerSec).toFixed(2)}x`).join(' / ');
  const errs = `${g.reduce((a, x) => a + x.errors, 0)} / ${j.reduce((a, x) => a + x.errors, 0)}`;
  console.log(`| ${w === 'read' ? 'linearizable read' : w} | ${c} | ${range(g.map((x) => x.opsPerSec), ops)} | `
    + `${range(j.map((x) => x.opsPerSec), ops)} | ${ratios} | ${range(g.map((x) => x.latency.p50Ns), ms)} | `
    + `${range(j.map((x) => x.latency.p50Ns), ms)} | ${errs} |`);
}
