// Errors of the client. Programs branch on `code`, never on `message`.

/**
 * ConsensusError is every error this package throws or rejects with.
 *
 * `code` is the server's error code (docs/PROTOCOL.md, "Errors") when the
 * server answered, or one of the client's own: `unavailable` (no endpoint
 * could serve the call), `closed` (the client was shut down), `timeout`
 * (the call's deadline passed), `bad_request` (refused before sending),
 * `not_supported` (a seed method that has no meaning on a client).
 *
 * `outcomeUnknown` is true when the call was a write that may or may not
 * have been applied: it was sent, and no answer came back (or the answer
 * was timeout, unavailable, internal, canceled or request_expired).
 */
export class ConsensusError extends Error {
  constructor(code, message, { outcomeUnknown = false, endpoint, cause, fromServer = false } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'ConsensusError';
    this.code = code;
    this.outcomeUnknown = outcomeUnknown;
    if (endpoint !== undefined) this.endpoint = endpoint;
    // Whether a server answered with this code (not a client-side failure).
    Object.defineProperty(this, 'fromServer', { value: fromServer, writable: true });
  }
}

// Codes answered by a server whose write outcome is unknown.
const UNKNOWN_OUTCOME_CODES = new Set(['timeout', 'unavailable', 'internal', 'canceled', 'request_expired']);

/** serverError builds the error for a server's [code, message] answer. */
export function serverError(code, message, endpoint, write) {
  return new ConsensusError(String(code), `${endpoint}: ${message}`, {
    endpoint,
    fromServer: true,
    outcomeUnknown: write && UNKNOWN_OUTCOME_CODES.has(String(code)),
  });
}

/** NotSent marks a request that never left this process: a retry is safe. */
export class NotSent extends Error {
  constructor(cause) {
    super(cause?.message ?? String(cause));
    this.cause = cause;
  }
}

/** Lost marks a request that was sent and will get no answer. */
export class Lost extends Error {
  constructor(cause) {
    super(cause?.message ?? String(cause));
    this.cause = cause;
  }
}
