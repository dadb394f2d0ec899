package client

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultDialTimeout bounds one connection attempt.
	DefaultDialTimeout = 2 * time.Second
	// DefaultRequestTimeout bounds one call, retries included. It is above
	// the server's default request timeout (5s), so that a server-side
	// timeout, which says what happened, arrives first.
	DefaultRequestTimeout = 10 * time.Second
	// DefaultMaxFrameBytes is the server's default frame limit.
	DefaultMaxFrameBytes int64 = 4 << 20
	// DefaultMaxInFlight is the server's default in-flight limit.
	DefaultMaxInFlight = 1024
	// DefaultMaxAttempts bounds the tries of one call.
	DefaultMaxAttempts = 5
	// DefaultRetryBackoff is the first wait before retrying no_leader.
	DefaultRetryBackoff = 50 * time.Millisecond
	// DefaultKeepAlive is how long a connection with requests pending may
	// stay silent before it is pinged.
	DefaultKeepAlive = 5 * time.Second
	// maxRetryBackoff caps the doubling backoff.
	maxRetryBackoff = time.Second
)

// Config configures a Client. Zero fields take their defaults.
type Config struct {
	// Endpoints lists the HTTP API addresses of cluster members, tried in
	// order: "host:port", "http://host:port" or "ws://host:port"
	// ("https"/"wss" for TLS). A URL with a path other than "/" is used as
	// given (behind a proxy); otherwise the path is /v1/ws. Required.
	Endpoints []string
	// DialTimeout bounds one connection attempt to one endpoint. Default
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// RequestTimeout bounds one call, retries included, when the caller's
	// context has no earlier deadline. Default DefaultRequestTimeout.
	RequestTimeout time.Duration
	// MaxFrameBytes bounds a frame in either direction. It must not exceed
	// the server's limit (HTTPOptions.WSMaxFrameBytes) or the server
	// closes the connection on a full frame. Default DefaultMaxFrameBytes.
	MaxFrameBytes int64
	// MaxInFlight bounds the requests awaiting an answer on one
	// connection; further callers wait their turn. Default
	// DefaultMaxInFlight.
	MaxInFlight int
	// MaxAttempts bounds the tries of one call, retries only where safe
	// (see the package documentation). 1 disables retries. Default
	// DefaultMaxAttempts.
	MaxAttempts int
	// RetryBackoff is the wait before the first retry after no_leader (or
	// unavailable, for a read), or after every endpoint failed; it doubles
	// with each retry, up to 1s.
	// Default DefaultRetryBackoff.
	RetryBackoff time.Duration
	// KeepAlive is how long a connection with requests pending may go
	// without receiving anything before it is pinged; no pong within
	// another KeepAlive breaks it. Negative disables. Default
	// DefaultKeepAlive.
	KeepAlive time.Duration
	// LeaderRefresh is how often a Client in use asks which member leads,
	// in the background, and moves its calls to that member's endpoint
	// (matched by its advertised HTTP address; an endpoint with a path of
	// its own, behind a proxy, is never matched). Writes and linearizable
	// reads are answered sooner by the leader. Negative disables: calls
	// stay on the first endpoint that works. Default DefaultLeaderRefresh.
	LeaderRefresh time.Duration
	// WatchOverWS makes Watch use the client's /v1/ws connections (many
	// watches share one connection and its frames; docs/PROTOCOL.md
	// "Watches") instead of one GET /v1/watch stream (Server-Sent Events,
	// a connection each) per watch. A server that predates watches over
	// /v1/ws answers them bad_request. Default false.
	WatchOverWS bool
	// HTTPClient, if set, makes the WebSocket handshakes (for TLS settings
	// or a proxy). By default the Client uses its own transport.
	HTTPClient *http.Client
	// Token, if set, is sent as "Authorization: Bearer <token>" when a
	// connection opens; servers started with --auth-token-file need it.
	Token string
	// ClientID names the client in the request ids of its writes (at most
	// kv.MaxClientIDBytes). Default: "go-" and 24 random hex digits, new
	// for every Client. Two live Clients must never share one.
	ClientID string
}

func (c Config) withDefaults() Config {
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.LeaderRefresh == 0 {
		c.LeaderRefresh = DefaultLeaderRefresh
	}
	return c
}

// Validate reports what is wrong with c, after defaults.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("client: no endpoints")
	}
	for _, e := range c.Endpoints {
		if _, err := endpointURL(e); err != nil {
			return err
		}
	}
	if c.MaxFrameBytes < 1024 {
		return fmt.Errorf("client: MaxFrameBytes %d is too small", c.MaxFrameBytes)
	}
	return nil
}

// endpointURL turns an endpoint into the URL of its /v1/ws.
func endpointURL(endpoint string) (string, error) {
	raw := endpoint
	if !strings.Contains(raw, "://") {
		raw = "ws://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("client: endpoint %q: %w", endpoint, err)
	}
	switch u.Scheme {
	case "ws", "http":
		u.Scheme = "ws"
	case "wss", "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("client: endpoint %q: scheme %q, want ws, wss, http or https", endpoint, u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("client: endpoint %q has no host", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/ws"
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}
