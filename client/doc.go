// Package client is the Go client of a consensus cluster. It speaks the
// multiplexed /v1/ws protocol (WebSocket + MessagePack, docs/PROTOCOL.md):
// one connection per endpoint carries any number of concurrent requests,
// matched to their answers by id, and requests queued together travel in
// one frame. A Client is safe for concurrent use by many goroutines, and
// many goroutines is how it is meant to be used.
//
// # Endpoints and failover
//
// Config.Endpoints lists the HTTP API addresses of cluster members. The
// client uses one of them at a time and dials it lazily, on the first
// request. Any member serves any request (a follower forwards writes to the
// leader), so the client moves to the next endpoint only when the current
// one cannot be reached, its connection breaks, or it answers no_leader or
// unavailable. An http:// endpoint (or one without a scheme) whose server
// speaks only HTTPS fails at once with ErrHTTPSEndpoint, not retried: the
// endpoint needs https:// and Config.HTTPClient a TLS configuration.
//
// It prefers the leader, though: while in use, it asks every
// Config.LeaderRefresh (2 s) in the background which member leads, and
// when that member's advertised HTTP address is one of the endpoints (and
// has not failed in the last 10 s), moves its calls there. A write or a
// linearizable read answered by the leader skips the round trips a
// follower makes to it.
//
// # Watches
//
// Client.Watch follows the changes under a prefix over GET /v1/watch
// (Server-Sent Events on the HTTP port), one stream per watch, or with
// Config.WatchOverWS over the client's /v1/ws connection, many watches
// sharing it and its frames (cheaper for the server by far with many
// watches). When a stream ends (its node stops, the connection breaks)
// the watch reopens one on the next endpoint, resuming after the last
// revision it delivered: changes arrive in revision order and each once.
// A start revision the server no longer keeps is a *kv.CompactedError
// (errors.Is kv.ErrCompacted); too_many_watches is ErrRateLimited.
//
// # Leases and sessions
//
// Grant, KeepAlive, TimeToLive, Revoke and Leases serve leases, and
// PutWith attaches a key to one (PutOptions.Lease) or gives it a time to
// live (PutOptions.TTL); docs/API.md "Leases" says what they mean. A
// keepalive and a time to live are the leader's to answer: a follower
// asks it. A Session grants a lease and keeps it alive in the background
// until Close, and closes Done when the lease is lost.
//
// # Locks, elections and fences
//
// Lock and Unlock take and release a lock held by a lease (Session.Lock
// uses the session's); Campaign, Proclaim, Resign and Leader run an
// election, and Observe follows its leadership over GET
// /v1/elections/{name}/observe (Server-Sent Events), moving to the next
// endpoint when a stream breaks. Each grant carries a fencing token,
// strictly increasing: a write made with WithFence(ctx, api.Fence{Lock,
// Token}) is applied only while that token holds the lock (kv.ErrFenced
// otherwise). docs/API.md "Locks and fenced writes" says what they mean.
//
// # Retries and outcomes
//
// A call is retried, within its context and Config.MaxAttempts, only when
// retrying cannot apply a write twice:
//
//   - any operation whose request never left this process (the endpoint
//     refused the connection, the dial timed out, or the connection broke
//     before the request was written) is retried on the next endpoint;
//   - any operation answered no_leader is retried, after a backoff, on the
//     next endpoint: the server did not propose it;
//   - reads are also retried when the connection breaks after sending, or
//     the server answers unavailable;
//   - writes are also retried when the connection breaks after sending, or
//     the server answers timeout or unavailable: every write carries a
//     request id (Config.ClientID and a sequence number), and the retry
//     carries the same one, so the cluster applies it once and answers the
//     retry with the first attempt's result.
//
// The cluster remembers a request id while its client is among the 1024
// most recently active and the sequence among that client's 256 most
// recent (at least); a retry older than that is answered request_expired
// (kv.ErrRequestExpired, outcome unknown) rather than applied again.
//
// A write whose retries are exhausted without an answer returns an error
// wrapping ErrOutcomeUnknown: the write may or may not be applied, and the
// caller decides (read the key, or retry). These errors mean "outcome
// unknown" for writes:
//
//   - the server answered timeout (also consensus.ErrTimeout);
//   - the server answered unavailable, canceled, internal or
//     request_expired (also ErrUnavailable or kv.ErrRequestExpired);
//   - the connection broke after the request was written (also
//     ErrUnavailable);
//   - the caller's context ended after the request was written (also
//     context.DeadlineExceeded or context.Canceled).
//
// A context that ends before the request is written returns the context's
// error alone: that write was not sent.
//
// # Errors
//
// Errors answered by the server are *ServerError values carrying the code
// of the HTTP API (Code* constants), and wrap the sentinel errors of the
// packages that define them, so callers use errors.Is:
//
//	key_not_found  kv.ErrKeyNotFound
//	invalid_key    kv.ErrInvalidKey
//	invalid_json   kv.ErrInvalidValue
//	too_large      kv.ErrValueTooLarge and consensus.ErrTooLarge
//	no_leader      consensus.ErrNoLeader
//	timeout        consensus.ErrTimeout
//	unavailable, canceled, internal (and codes this version does not know)
//	               ErrUnavailable
//	bad_request    ErrBadRequest
//	precondition_failed kv.ErrConflict
//	state_full     kv.ErrStateFull
//	workflow_not_found, invalid_transition, node_not_found, request_expired
//	               kv.ErrWorkflowNotFound, kv.ErrInvalidTransition,
//	               kv.ErrNodeNotFound, kv.ErrRequestExpired
//	lease_not_found, lease_exists, too_many_leases
//	               kv.ErrLeaseNotFound, kv.ErrLeaseExists, kv.ErrTooManyLeases
//	invalid_lease  api.ErrInvalidLeaseID and kv.ErrInvalidTTL
//	locked, not_holder, fenced, too_many_locks, lock_not_found
//	               kv.ErrLocked, kv.ErrNotHolder, kv.ErrFenced,
//	               kv.ErrTooManyLocks, kv.ErrLockNotFound
package client
