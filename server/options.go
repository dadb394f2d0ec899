package server

// HTTPOptions: the limits and timeouts of the HTTP API and /v1/ws, and
// their defaults.

import (
	"log/slog"
	"time"

	"github.com/unrdf/consensus/kv"
)

// Defaults applied by NewHandler to zero HTTPOptions fields.
const (
	// DefaultMaxBodyBytes is the default limit on a request body: the
	// default value limit, kv.DefaultMaxValueBytes (1 MiB).
	DefaultMaxBodyBytes int64 = kv.DefaultMaxValueBytes
	// DefaultRequestTimeout is the default bound on how long one request
	// waits on the backend.
	DefaultRequestTimeout = 5 * time.Second
)

// HTTPOptions configures the handler NewHandler returns. The zero value is
// ready to use: a zero (or negative) field means its default.
type HTTPOptions struct {
	// MaxBodyBytes is the largest request body accepted, in bytes; a larger
	// one is answered 413 too_large, before it is read when its
	// Content-Length says so. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxKeyBytes is the longest key accepted, in bytes after
	// percent-decoding; a longer one is answered 400 invalid_key. Default
	// kv.DefaultMaxKeyBytes.
	MaxKeyBytes int
	// RequestTimeout bounds how long one request waits on the backend; when
	// it passes the answer is 503 timeout (for a write, outcome unknown).
	// It never bounds whether a proposed write is applied. Default
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Logger receives unexpected backend errors and recovered panics (at
	// Error) and one line per request (at Debug). Nil discards.
	Logger *slog.Logger
	// WSMaxFrameBytes bounds one /v1/ws frame in either direction; a
	// larger incoming frame closes the connection (1009), a response that
	// would not fit is answered too_large. Default DefaultWSMaxFrameBytes,
	// or MaxBodyBytes plus 64 KiB when that is larger.
	WSMaxFrameBytes int64
	// WSMaxInFlight bounds the requests one /v1/ws connection may have in
	// progress, and the requests one frame may carry. Beyond it the server
	// stops reading the connection until an answer is written. Default
	// DefaultWSMaxInFlight.
	WSMaxInFlight int

	// Tokens, if set, turns on bearer-token authentication: every route
	// but /healthz and /readyz needs "Authorization: Bearer <token>" (401
	// unauthorized without a valid one) and writes need a read-write token
	// (403 forbidden for a read-only one). Nil serves everyone.
	Tokens *Tokens
	// MaxInFlight bounds the requests being served at once (a /v1/ws
	// connection counts its requests itself); beyond it the answer is 503
	// overloaded with Retry-After. Default DefaultMaxInFlight.
	MaxInFlight int
	// RateLimit is the sustained requests per second allowed to one client
	// (its token when auth is on, else its IP), with bursts of RateBurst;
	// beyond it the answer is 429 rate_limited with Retry-After. Zero
	// turns the limit off (the default).
	RateLimit float64
	// RateBurst is the burst allowed above RateLimit. Default: RateLimit
	// rounded up.
	RateBurst int
	// ReadHeaderTimeout bounds reading a request's headers, and
	// BodyReadTimeout its body, so a slow client cannot hold a connection.
	// Defaults DefaultReadHeaderTimeout and DefaultBodyReadTimeout. Applied
	// by Start (ReadHeaderTimeout is a server setting).
	ReadHeaderTimeout time.Duration
	// BodyReadTimeout bounds reading one request body.
	BodyReadTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long. Default
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Watch configures GET /v1/watch: watches per client, heartbeats.
	Watch WatchOptions

	// Membership, if set, serves the membership routes (/v1/members,
	// /v1/leader/transfer; see members.go). Start sets it to the node.
	Membership Membership
	// Cluster, if set, serves /v1/cluster/... (health; see members.go).
	// Start sets it to the node's cluster.Manager.
	Cluster ClusterHealth
	// Events, if set, serves GET /v1/events (see events.go). Start sets
	// it to a log of the node's cluster events.
	Events *EventLog
	// members is how a forwarded transfer reaches the leader; Start sets
	// it from Config.Members.
	members MemberAPI
}

// Defaults of the HTTP limits.
const (
	// DefaultMaxInFlight is the default HTTPOptions.MaxInFlight.
	DefaultMaxInFlight = 4096
	// DefaultReadHeaderTimeout is the default HTTPOptions.ReadHeaderTimeout.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultBodyReadTimeout is the default HTTPOptions.BodyReadTimeout.
	DefaultBodyReadTimeout = 30 * time.Second
	// DefaultIdleTimeout is the default HTTPOptions.IdleTimeout.
	DefaultIdleTimeout = 2 * time.Minute
)

// withDefaults returns o with every zero field set to its default.
func (o HTTPOptions) withDefaults() HTTPOptions {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxKeyBytes <= 0 {
		o.MaxKeyBytes = kv.DefaultMaxKeyBytes
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.WSMaxFrameBytes <= 0 {
		o.WSMaxFrameBytes = max(DefaultWSMaxFrameBytes, o.MaxBodyBytes+wsFrameHeadroom)
	}
	if o.WSMaxInFlight <= 0 {
		o.WSMaxInFlight = DefaultWSMaxInFlight
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if o.BodyReadTimeout <= 0 {
		o.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	o.Watch = o.Watch.withDefaults()
	return o
}
