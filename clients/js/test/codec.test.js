import { test } from 'node:test';
import assert from 'node:assert/strict';
import { unpack } from 'msgpackr';
import { encodeFrame, decodeFrame, jsonBytes, uint, decodeItem, decodeLease, leaseWire } from '../src/codec.js';
import { SeqWindow, endpointURLs } from '../src/client.js';

test('a put frame is the bytes docs/PROTOCOL.md shows', () => {
  const frame = encodeFrame([[1, 1, 'k', jsonBytes({ a: 1 })]]);
  assert.equal(Buffer.from(frame).toString('hex'), '920191940101a16bc4077b2261223a317d');
  const answer = Buffer.from('9201919301' + '0005', 'hex');
  assert.deepEqual(decodeFrame(answer), [[1, 0, 5]]);
});

test('integers above 2^32 are sent as MessagePack integers, not floats', () => {
  const b = Buffer.from(encodeFrame([[1, 1, 'k', jsonBytes(1), ['c', uint(2 ** 40)]]]));
  assert.ok(!b.includes(0xcb), 'no float64 in the frame');
  assert.equal(Number(unpack(b)[1][0][4][1]), 2 ** 40);
});

test('a malformed frame is an error, not a crash', () => {
  assert.throws(() => decodeFrame(Buffer.from('92029190', 'hex')), /malformed/);
  assert.throws(() => decodeFrame(Buffer.from('c1', 'hex')));
});

test('items decode with their lease when there is one, in hexadecimal as the JSON API writes it', () => {
  assert.deepEqual(decodeItem(['k', Buffer.from('[1]'), 3, 2, 1, 255]),
    { key: 'k', value: [1], revision: 3, createRevision: 2, version: 1, lease: 'ff' });
});

test('a 63-bit lease id keeps every bit through a frame, both ways', () => {
  const id = '7ffffffffffffff3'; // beyond 2^53: a double would round it
  const wire = leaseWire(id);
  assert.equal(typeof wire, 'bigint');
  const [response] = decodeFrame(encodeFrame([[1, 0, [wire, 1000, null, null]]]));
  assert.equal(decodeLease(response[2]).id, id);
  assert.equal(leaseWire('ff'), 255);
  for (const bad of ['', '0', '8000000000000000', '1'.repeat(17), 'xyz', 12, null]) {
    assert.equal(leaseWire(bad), undefined, `lease ${bad}`);
  }
});

test('endpoints: host:port, http(s) and ws(s) URLs', () => {
  assert.deepEqual(endpointURLs('127.0.0.1:9080'), { http: 'http://127.0.0.1:9080', ws: 'ws://127.0.0.1:9080/v1/ws', host: '127.0.0.1:9080' });
  assert.deepEqual(endpointURLs('https://h:1'), { http: 'https://h:1', ws: 'wss://h:1/v1/ws', host: 'h:1' });
  assert.deepEqual(endpointURLs('ws://h:1/v1/ws'), { http: 'http://h:1', ws: 'ws://h:1/v1/ws', host: 'h:1' });
  assert.equal(endpointURLs('http://proxy/consensus').host, '');
});

test('the sequence window holds a write back until the oldest unsettled one is within 256', async () => {
  const w = new SeqWindow(256);
  const signal = new AbortController().signal;
  const seqs = [];
  for (let i = 0; i < 256; i++) seqs.push(await w.acquire(signal));
  assert.equal(seqs.at(-1), 256);
  let got = 0;
  const waiting = w.acquire(signal).then((s) => { got = s; });
  await new Promise((r) => setImmediate(r));
  assert.equal(got, 0, 'seq 257 waits while seq 1 is unsettled');
  w.release(2);
  await new Promise((r) => setImmediate(r));
  assert.equal(got, 0, 'releasing another does not move the window');
  w.release(1);
  await waiting;
  assert.equal(got, 257);
  assert.equal(await w.acquire(signal), 258, 'the window is 3..258 now');
  const ac = new AbortController();
  const stuck = w.acquire(ac.signal);
  ac.abort(new Error('gave up'));
  await assert.rejects(stuck);
});
