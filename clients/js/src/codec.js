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
  listPage: 30,
});

/** Operations that change the state: they carry a request id. */
export const WRITES = new Set([Op.put, Op.delete, Op.txn, Op.startWorkflow, Op.stopWorkflow,
  Op.updateWorkflow, Op.registerNode, Op.deregisterNode]);

// useRecords off: plain MessagePack arrays and maps, which the server reads.
const packr = new Packr({ useRecords: false, int64AsType: 'number', mapsAsObjects: true });
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
  if (a.length > 5 && a[5]) item.lease = Number(a[5]);
  return item;
}

/** decodeList turns a [revision, [item, ...]] result into an object. */
export function decodeList(a) {
  return { revision: Number(a[0]), items: (a[1] ?? []).map(decodeItem) };
}
