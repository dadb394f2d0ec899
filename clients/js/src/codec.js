// The /v1/ws frame codec (docs/PROTOCOL.md, "Frames"), on msgpackr.

import { Packr } from 'msgpackr';

export const FRAME_VERSION = 1;

/** Operation codes of /v1/ws. */
export const Op = Object.freeze({
  put: 1,
  get: 2,
  delete: 3,
  list: 4,
  status: 5,
  txn: 6,
  startWorkflow: 7,
  stopWorkflow: 8,
  updateWorkflow: 9,
  getWorkflow: 10,
  listWorkflows: 11,
  registerNode: 12,
  deregisterNode: 13,
  listNodes: 14,
  grantLease: 15,
  revokeLease: 16,
  keepAlive: 17,
  timeToLive: 18,
  listLeases: 19,
  acquireLock: 20,
  releaseLock: 21,
  getLock: 22,
  campaign: 23,
  proclaim: 24,
  resign: 25,
  leader: 26,
  listPage: 30,
  enqueue: 40,
  claim: 41,
  heartbeat: 42,
  complete: 43,
  fail: 44,
  requeue: 45,
  getTask: 46,
  queueStats: 47,
  listTasks: 48,
});

/** Operations that change the state: they carry a request id. */
export const WRITES = new Set([Op.put, Op.delete, Op.txn, Op.startWorkflow, Op.stopWorkflow,
  Op.updateWorkflow, Op.registerNode, Op.deregisterNode, Op.grantLease, Op.revokeLease,
  Op.acquireLock, Op.releaseLock, Op.campaign, Op.proclaim, Op.resign,
  Op.enqueue, Op.claim, Op.complete, Op.fail, Op.requeue]);

// useRecords off: plain MessagePack arrays and maps, which the server reads.
// int64AsType 'auto': a 64-bit integer beyond 2^53 (a lease id) decodes as
// a BigInt instead of losing its low bits; every other stays a number.
const packr = new Packr({ useRecords: false, int64AsType: 'auto', mapsAsObjects: true });
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * uint returns n in a form msgpackr encodes as a MessagePack integer: it
 * writes numbers above 2^32 as float64, which the server refuses where it
 * expects an integer.
 */
export function uint(n) {
  return n > 0xffffffff ? BigInt(n) : n;
}

/** jsonBytes encodes a JSON value as the `bin` the protocol carries. */
export function jsonBytes(value) {
  const text = JSON.stringify(value);
  if (text === undefined) return undefined;
  return encoder.encode(text);
}

/** encodeFrame encodes requests, each [id, op, ...args], as one frame. */
export function encodeFrame(requests) {
  return packr.pack([FRAME_VERSION, requests]);
}

/** encodeRequest encodes one request alone, to measure it. */
export function encodeRequest(request) {
  return packr.pack(request);
}

/** decodeFrame returns the responses of one frame, each [id, kind, result]. */
export function decodeFrame(bytes) {
  const frame = packr.unpack(bytes);
  if (!Array.isArray(frame) || frame.length < 2 || frame[0] !== FRAME_VERSION || !Array.isArray(frame[1])) {
    throw new Error('malformed frame');
  }
  return frame[1];
}

/** parseJSON decodes a `bin` (or `str`) holding JSON. */
export function parseJSON(v) {
  if (v === null || v === undefined) return undefined;
  return JSON.parse(typeof v === 'string' ? v : decoder.decode(v));
}

/** decodeItem turns a protocol item into an object. */
export function decodeItem(a) {
  const item = {
    key: String(a[0]),
    value: parseJSON(a[1]),
    revision: Number(a[2]),
    createRevision: Number(a[3]),
    version: Number(a[4]),
  };
  if (a.length > 5 && a[5]) item.lease = leaseHex(a[5]);
  return item;
}

/**
 * leaseHex writes a lease id from the wire (a number or a BigInt) as the
 * JSON API and the CLI do: lowercase hexadecimal.
 */
export function leaseHex(v) {
  return BigInt(v).toString(16);
}

// The largest lease id: ids are positive 63-bit numbers.
const MAX_LEASE = (1n << 63n) - 1n;

/**
 * leaseWire turns a lease id (hexadecimal string, as leaseHex writes it,
 * or a BigInt) into the integer the protocol carries, or undefined when it
 * is not one: not 1 to 16 hexadecimal digits of a positive 63-bit number.
 */
export function leaseWire(id) {
  let v;
  if (typeof id === 'bigint') {
    v = id;
  } else if (typeof id === 'string' && /^[0-9a-f]{1,16}$/i.test(id)) {
    v = BigInt('0x' + id);
  } else {
    return undefined;
  }
  if (v <= 0n || v > MAX_LEASE) return undefined;
  return v <= 0xffffffffn ? Number(v) : v;
}

/** decodeLease turns a lease result [id, ttlMs, remainingMs?, keys?] into an object. */
export function decodeLease(a) {
  const lease = { id: leaseHex(a[0]), ttlMs: Number(a[1]) };
  if (a[2] !== null && a[2] !== undefined) lease.remainingMs = Number(a[2]);
  if (Array.isArray(a[3])) lease.keys = a[3].map(String);
  return lease;
}

/** decodeLock turns a lock result [name, token, lease, value?, waiters] into an object. */
export function decodeLock(a) {
  const lock = { name: String(a[0]), token: Number(a[1]), lease: leaseHex(a[2]), waiters: Number(a[4] ?? 0) };
  const value = parseJSON(a[3]);
  if (value !== undefined) lock.value = value;
  return lock;
}

/** decodeList turns a [revision, [item, ...]] result into an object. */
export function decodeList(a) {
  return { revision: Number(a[0]), items: (a[1] ?? []).map(decodeItem) };
}
