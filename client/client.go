package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/unrdf/consensus/api"
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

// Client talks to a cluster over one multiplexed /v1/ws connection per
// endpoint in use. It is safe for concurrent use; Close releases it.
type Client struct {
	cfg       Config
	endpoints []*endpoint
	// preferred indexes the endpoint calls go to; it moves on when that
	// endpoint fails.
	preferred atomic.Int64
	leader    leaderRouting

	httpClient *http.Client
	transport  *http.Transport // owned, closed by Close; nil with Config.HTTPClient

	// id names this client in the request ids of its writes, and seq
	// numbers them: a write retried after a timeout or a lost connection
	// carries the same (id, seq), and the cluster applies it once.
	id   string
	seqs seqWindow

	ctx    context.Context // cancelled by Close: ends dials in progress
	cancel context.CancelFunc
	closed atomic.Bool
	wg     sync.WaitGroup // dials and connection goroutines
}

// endpoint is one server and its connection, dialed on first use.
type endpoint struct {
	url  string
	host string // host:port to match a member's HTTP address; "" if none
	mu   sync.Mutex
	conn *conn
	// dialing is the dial in progress, if any.
	dialing *dialAttempt
	// failedAt is when a call to this endpoint last failed.
	failedAt time.Time
	// wantsHTTPS is set once a dial found that the endpoint speaks HTTPS
	// to an http:// URL: a configuration mistake no later dial mends, so
	// none is made (a leader refresh racing the failed call used to dial
	// it a second time).
	wantsHTTPS bool
}

// dialAttempt is a dial in progress that concurrent callers share.
type dialAttempt struct {
	done chan struct{}
	conn *conn
	err  error
}

// New returns a Client for the cluster at cfg.Endpoints. It does not
// connect: the first request does.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, id: cfg.ClientID, seqs: newSeqWindow(api.DefaultSessionWindow)}
	if c.id == "" {
		var b [12]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		c.id = "go-" + hex.EncodeToString(b[:])
	}
	if err := (api.RequestID{Client: c.id, Seq: 1}).Validate(); err != nil {
		return nil, fmt.Errorf("client: ClientID: %w", err)
	}
	for _, e := range cfg.Endpoints {
		u, _ := endpointURL(e) // checked by Validate
		c.endpoints = append(c.endpoints, &endpoint{url: u, host: endpointHost(u)})
	}
	c.httpClient = cfg.HTTPClient
	if c.httpClient == nil {
		c.transport = &http.Transport{
			Proxy:       http.ProxyFromEnvironment,
			DialContext: (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 15 * time.Second}).DialContext,
		}
		c.httpClient = &http.Client{Transport: c.transport}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Close closes the client's connections; calls in progress fail with
// ErrClosed (a write already sent with ErrOutcomeUnknown too). It waits
// for the client's goroutines and is safe to call more than once.
func (c *Client) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	var conns []*conn
	for _, ep := range c.endpoints {
		// Taking the lock orders this after any connect that saw closed
		// false, so no dial starts after it.
		ep.mu.Lock()
		if ep.conn != nil {
			conns = append(conns, ep.conn)
			ep.conn = nil
		}
		ep.mu.Unlock()
	}
	// Likewise no leader refresh starts after this.
	c.leader.mu.Lock()
	c.leader.closed = true
	c.leader.mu.Unlock()
	c.cancel()
	var closing sync.WaitGroup
	for _, cn := range conns {
		closing.Go(func() { cn.fail(ErrClosed, websocket.StatusNormalClosure, "client closed") })
	}
	closing.Wait()
	c.wg.Wait()
	if c.transport != nil {
		c.transport.CloseIdleConnections()
	}
	return nil
}

// connect returns ep's connection, dialing it if there is none. Failures
// are *notSentError.
func (c *Client) connect(ctx context.Context, ep *endpoint) (*conn, error) {
	ep.mu.Lock()
	if ep.conn != nil && !ep.conn.broken() {
		cn := ep.conn
		ep.mu.Unlock()
		return cn, nil
	}
	ep.conn = nil
	if c.closed.Load() {
		ep.mu.Unlock()
		return nil, &notSentError{err: ErrClosed}
	}
	if ep.wantsHTTPS {
		ep.mu.Unlock()
		return nil, &notSentError{err: fmt.Errorf("dial %s: %w", ep.url, ErrHTTPSEndpoint)}
	}
	d := ep.dialing
	if d == nil {
		d = &dialAttempt{done: make(chan struct{})}
		ep.dialing = d
		c.wg.Add(1)
		go c.dial(ep, d)
	}
	ep.mu.Unlock()
	select {
	case <-d.done:
		if d.err != nil {
			return nil, &notSentError{err: d.err}
		}
		return d.conn, nil
	case <-ctx.Done():
		return nil, &notSentError{err: ctx.Err()}
	}
}

// dial connects to ep, bounded by DialTimeout and Close, not by any one
// caller's context: callers share the attempt.
func (c *Client) dial(ep *endpoint, d *dialAttempt) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DialTimeout)
	var hdr http.Header
	if c.cfg.Token != "" {
		hdr = http.Header{"Authorization": {"Bearer " + c.cfg.Token}}
	}
	ws, hresp, err := websocket.Dial(ctx, ep.url, &websocket.DialOptions{
		HTTPClient:      c.httpClient,
		HTTPHeader:      hdr,
		CompressionMode: websocket.CompressionDisabled,
	})
	cancel()
	var cn *conn
	if err == nil {
		cn = newConn(ep.url, ws, &c.cfg)
		cn.start(&c.wg)
	} else if refused := refusal(ep.url, hresp); refused != nil {
		// The server answered the handshake with an error (401, 403,
		// 429, HTTPS wanted, ...): that answer, not a transport failure,
		// is the error.
		err = fmt.Errorf("dial %s: %w", ep.url, refused)
	} else {
		err = fmt.Errorf("dial %s: %w", ep.url, err)
	}
	ep.mu.Lock()
	ep.dialing = nil
	if errors.Is(err, ErrHTTPSEndpoint) {
		ep.wantsHTTPS = true
	}
	if cn != nil && c.closed.Load() {
		err = ErrClosed
	} else {
		ep.conn = cn
	}
	d.conn, d.err = cn, err
	ep.mu.Unlock()
	if cn != nil && err != nil {
		cn.fail(ErrClosed, websocket.StatusNormalClosure, "client closed")
	}
	close(d.done)
}

// refusal returns the error a server answered a WebSocket handshake with:
// a *ServerError, or ErrHTTPSEndpoint for a plain-HTTP handshake on an
// HTTPS port. It is nil if resp is not such an answer (no response, or a
// 5xx, which says nothing about this request and leaves it to the
// retries).
func refusal(endpoint string, resp *http.Response) error {
	if resp == nil || resp.StatusCode < 400 || resp.StatusCode >= 500 {
		return nil
	}
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if resp.Body != nil {
		// coder/websocket leaves at most the first 1 KiB of the body.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		if IsHTTPSAnswer(resp.StatusCode, b) {
			return ErrHTTPSEndpoint
		}
		_ = json.Unmarshal(b, &eb)
	}
	if eb.Error.Code == "" {
		return nil
	}
	return &ServerError{Code: eb.Error.Code, Message: eb.Error.Message, Endpoint: endpoint}
}

// ReadOption adjusts a read (Get, List).
type ReadOption func(*readOptions)

type readOptions struct {
	consistency api.Consistency
}

// WithConsistency selects how a read is served: kv.Linearizable (the
// default) or kv.Local (this endpoint's state; fast, possibly stale).
func WithConsistency(c api.Consistency) ReadOption {
	return func(o *readOptions) { o.consistency = c }
}

func readConsistency(opts []ReadOption) api.Consistency {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o.consistency
}

// Put stores value, one JSON value, under key and returns the write's
// revision.
func (c *Client) Put(ctx context.Context, key string, value []byte) (int64, error) {
	return c.PutIf(ctx, key, value, api.Cond{})
}

// PutIf is Put on condition that cond holds when it is applied (for
// example kv.IfRevision(item.Revision), or kv.IfAbsent() to create only);
// otherwise it fails with an error wrapping kv.ErrConflict.
func (c *Client) PutIf(ctx context.Context, key string, value []byte, cond api.Cond) (int64, error) {
	resp, err := c.doWrite(ctx, &api.Request{Op: api.OpPut, Key: key, Value: value, Cond: cond})
	return resp.revision, err
}

// doWrite runs write request r with this client's request id. The id's
// sequence number is held from here until the write's outcome is settled
// (see seqWindow).
func (c *Client) doWrite(ctx context.Context, r *api.Request) (response, error) {
	seq, err := c.seqs.acquire(ctx)
	if err != nil {
		return response{}, fmt.Errorf("client: %s: waiting for a sequence number: %w", r.Op, err)
	}
	defer c.seqs.release(seq)
	r.ReqID = api.RequestID{Client: c.id, Seq: seq}
	return c.doRequest(ctx, r)
}

// doRequest encodes r and runs it (do).
func (c *Client) doRequest(ctx context.Context, r *api.Request) (response, error) {
	args, nargs := encodeArgs(r)
	return c.do(ctx, r.Op, nargs, args)
}

// ClientID returns the id this client's writes carry.
func (c *Client) ClientID() string { return c.id }

// Get returns the item under key; an error wrapping kv.ErrKeyNotFound if
// there is none.
func (c *Client) Get(ctx context.Context, key string, opts ...ReadOption) (api.Item, error) {
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpGet, Key: key, Consistency: readConsistency(opts)})
	return resp.item, err
}

// Delete removes key and returns the delete's revision; an error wrapping
// kv.ErrKeyNotFound if it did not exist.
func (c *Client) Delete(ctx context.Context, key string) (int64, error) {
	return c.DeleteIf(ctx, key, api.Cond{})
}

// DeleteIf is Delete on condition that cond holds; otherwise it fails
// with an error wrapping kv.ErrConflict.
func (c *Client) DeleteIf(ctx context.Context, key string, cond api.Cond) (int64, error) {
	resp, err := c.doWrite(ctx, &api.Request{Op: api.OpDelete, Key: key, Cond: cond})
	return resp.revision, err
}

// Batch applies ops all or nothing, at one revision, which it returns
// (the seed's batchUpdate): every Cond must hold (else kv.ErrConflict),
// every deleted key must exist, and no key may appear twice.
func (c *Client) Batch(ctx context.Context, ops []api.TxnOp) (int64, error) {
	resp, err := c.doWrite(ctx, &api.Request{Op: api.OpTxn, Ops: ops})
	return resp.revision, err
}

// Update is an atomic read-modify-write of key (the seed's update): it
// reads the key (linearizably), calls fn, and writes the result on
// condition that the key is still at the revision fn saw; on a conflict
// it reads and calls fn again. fn may therefore run more than once and
// must not have side effects. It returns the write's revision.
func (c *Client) Update(ctx context.Context, key string, fn api.UpdateFunc) (int64, error) {
	for {
		cur, err := c.Get(ctx, key)
		exists := err == nil
		if err != nil && !errors.Is(err, api.ErrKeyNotFound) {
			return 0, err
		}
		value, err := fn(cur, exists)
		if err != nil {
			return 0, err
		}
		rev, err := c.PutIf(ctx, key, value, api.IfRevision(cur.Revision))
		if !errors.Is(err, api.ErrConflict) {
			return rev, err
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
}

// StartWorkflow starts workflow id with fields (a JSON object, or nil):
// workflow:<id> becomes {...fields, "id", "status":"running",
// "startedAt"}. Starting a running workflow fails with
// kv.ErrInvalidTransition.
func (c *Client) StartWorkflow(ctx context.Context, id string, fields []byte) (int64, error) {
	return c.workflowWrite(ctx, api.OpWorkflowStart, id, fields)
}

// StopWorkflow stops a running workflow, merging fields (or nil) into it;
// kv.ErrWorkflowNotFound or kv.ErrInvalidTransition otherwise.
func (c *Client) StopWorkflow(ctx context.Context, id string, fields []byte) (int64, error) {
	return c.workflowWrite(ctx, api.OpWorkflowStop, id, fields)
}

// UpdateWorkflowState merges fields, a JSON object, into a running
// workflow (UPDATE_STATE).
func (c *Client) UpdateWorkflowState(ctx context.Context, id string, fields []byte) (int64, error) {
	return c.workflowWrite(ctx, api.OpWorkflowUpdate, id, fields)
}

// RegisterNode registers application node id with metadata (a JSON
// object, or nil) under node:<id>.
func (c *Client) RegisterNode(ctx context.Context, id string, metadata []byte) (int64, error) {
	return c.workflowWrite(ctx, api.OpNodeRegister, id, metadata)
}

// DeregisterNode removes application node id; kv.ErrNodeNotFound if it is
// not registered.
func (c *Client) DeregisterNode(ctx context.Context, id string) (int64, error) {
	resp, err := c.doWrite(ctx, &api.Request{Op: api.OpNodeDeregister, Key: id})
	return resp.revision, err
}

func (c *Client) workflowWrite(ctx context.Context, op api.Op, id string, fields []byte) (int64, error) {
	resp, err := c.doWrite(ctx, &api.Request{Op: op, Key: id, Value: fields})
	return resp.revision, err
}

// WorkflowState returns workflow id (the seed's getWorkflowState); an
// error wrapping kv.ErrWorkflowNotFound if there is none.
func (c *Client) WorkflowState(ctx context.Context, id string, opts ...ReadOption) (api.Workflow, error) {
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpWorkflowGet, Key: id, Consistency: readConsistency(opts)})
	if err != nil {
		return api.Workflow{}, err
	}
	return api.WorkflowFromItem(resp.item), nil
}

// Workflows returns every workflow, by id, and the revision read at.
func (c *Client) Workflows(ctx context.Context, opts ...ReadOption) ([]api.Workflow, int64, error) {
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpWorkflowList, Consistency: readConsistency(opts)})
	if err != nil {
		return nil, 0, err
	}
	out := make([]api.Workflow, len(resp.items))
	for i, it := range resp.items {
		out[i] = api.WorkflowFromItem(it)
	}
	return out, resp.revision, nil
}

// Nodes returns the registered application nodes, by id, and the revision
// read at.
func (c *Client) Nodes(ctx context.Context, opts ...ReadOption) ([]api.Node, int64, error) {
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpNodeList, Consistency: readConsistency(opts)})
	if err != nil {
		return nil, 0, err
	}
	out := make([]api.Node, len(resp.items))
	for i, it := range resp.items {
		out[i] = api.NodeFromItem(it)
	}
	return out, resp.revision, nil
}

// Keys returns the keys under prefix, sorted, and the revision read at.
func (c *Client) Keys(ctx context.Context, prefix string, opts ...ReadOption) ([]string, int64, error) {
	items, rev, err := c.List(ctx, prefix, opts...)
	keys := make([]string, len(items))
	for i := range items {
		keys[i] = items[i].Key
	}
	return keys, rev, err
}

// Values returns the values under prefix, in key order, and the revision
// read at.
func (c *Client) Values(ctx context.Context, prefix string, opts ...ReadOption) ([]json.RawMessage, int64, error) {
	items, rev, err := c.List(ctx, prefix, opts...)
	values := make([]json.RawMessage, len(items))
	for i := range items {
		values[i] = items[i].Value
	}
	return values, rev, err
}

// Has reports whether key exists.
func (c *Client) Has(ctx context.Context, key string, opts ...ReadOption) (bool, error) {
	_, err := c.Get(ctx, key, opts...)
	if errors.Is(err, api.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// List returns the items whose keys start with prefix, sorted by key, and
// the revision they were read at. The empty prefix lists every key.
func (c *Client) List(ctx context.Context, prefix string, opts ...ReadOption) ([]api.Item, int64, error) {
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpList, Key: prefix, Consistency: readConsistency(opts)})
	return resp.items, resp.revision, err
}

// Status describes the node the client is connected to.
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpStatus})
	return resp.status, err
}

// do runs one call with failover and the retries the package
// documentation allows.
func (c *Client) do(ctx context.Context, op api.Op, nargs int, args []byte) (response, error) {
	name := op.String()
	if c.closed.Load() {
		return response{}, fmt.Errorf("client: %s: %w", name, ErrClosed)
	}
	if size := len(args) + api.RequestOverhead; int64(size) > c.cfg.MaxFrameBytes-api.FrameOverhead {
		tooLarge := api.ErrValueTooLarge
		if op.KeyOnly() {
			tooLarge = api.ErrInvalidKey // only a key makes these large
		}
		return response{}, fmt.Errorf("client: %s: request of %d bytes does not fit in a frame of %d: %w",
			name, size, c.cfg.MaxFrameBytes, tooLarge)
	}
	// Every write carries a request id, and the cluster applies an id
	// once: a write whose outcome is unknown (timeout, lost connection,
	// unavailable) is retried with the same id like a read.
	write := op.IsWrite()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()

	n := int64(len(c.endpoints))
	backoff := c.cfg.RetryBackoff
	triedSinceWait := 0
	var best error // the most telling error so far: a server's answer beats a transport failure
	c.maybeRefreshLeader()
	for attempt := 1; ; attempt++ {
		i := c.preferred.Load()
		ep := c.endpoints[i%n]
		resp, err := c.attempt(ctx, ep, op, nargs, args)
		if err == nil {
			return resp, nil
		}
		var se, bestSE *ServerError
		isServer := errors.As(err, &se)
		if isServer || best == nil || !errors.As(best, &bestSE) {
			best = err
		}
		var (
			ns    *notSentError
			lost  *lostError
			retry bool
			wait  bool
		)
		switch {
		case ctx.Err() != nil || c.closed.Load():
		case isServer:
			switch se.Code {
			case CodeNoLeader:
				// Not proposed: safe to retry anything.
				retry, wait = true, true
			case CodeUnavailable, CodeCanceled, CodeInternal:
				retry, wait = true, true
			case CodeTimeout:
				retry, wait = write, true
			}
		case errors.Is(err, ErrHTTPSEndpoint):
			// A configuration mistake: no retry mends it.
		case errors.As(err, &ns):
			retry = true
		case errors.As(err, &lost):
			retry = true
		}
		if !isServer {
			ep.noteFailure()
		}
		if !retry || attempt >= c.cfg.MaxAttempts {
			if ctx.Err() != nil || c.closed.Load() {
				// What happened to this attempt decides the outcome.
				return response{}, c.finalize(name, write, err)
			}
			return response{}, c.finalize(name, write, best)
		}
		// Whatever went wrong, another endpoint may do better.
		c.preferred.CompareAndSwap(i, (i+1)%n)
		triedSinceWait++
		if wait || int64(triedSinceWait) >= n {
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return response{}, c.finalize(name, write, best)
			}
			backoff = min(2*backoff, maxRetryBackoff)
			triedSinceWait = 0
		}
	}
}

// attempt sends one request to ep.
func (c *Client) attempt(ctx context.Context, ep *endpoint, op api.Op, nargs int, args []byte) (response, error) {
	cn, err := c.connect(ctx, ep)
	if err != nil {
		return response{}, err
	}
	resp, err := cn.roundTrip(ctx, op, nargs, args)
	if err == nil && resp.err != nil {
		return resp, resp.err
	}
	return resp, err
}

// finalize turns the last error of a call into what the caller sees.
func (c *Client) finalize(name string, write bool, err error) error {
	var (
		se   *ServerError
		ns   *notSentError
		lost *lostError
	)
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("client: %s: %w", name, se)
	case errors.As(err, &ns):
		if isContextError(ns.err) || errors.Is(ns.err, ErrClosed) {
			// Not sent: the caller stopped it, nothing happened.
			return fmt.Errorf("client: %s: %w", name, ns.err)
		}
		return fmt.Errorf("client: %s: %w: %w", name, ErrUnavailable, ns.err)
	case errors.As(err, &lost):
		stopped := isContextError(lost.err) || errors.Is(lost.err, ErrClosed)
		switch {
		case write && stopped:
			return fmt.Errorf("client: %s: %w (the request was sent; the write may or may not be applied): %w",
				name, ErrOutcomeUnknown, lost.err)
		case write:
			return fmt.Errorf("client: %s: %w (the request was sent; the write may or may not be applied): %w: %w",
				name, ErrOutcomeUnknown, ErrUnavailable, lost.err)
		case stopped:
			return fmt.Errorf("client: %s: %w", name, lost.err)
		}
		return fmt.Errorf("client: %s: %w: %w", name, ErrUnavailable, lost.err)
	}
	return fmt.Errorf("client: %s: %w", name, err)
}

func isContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
