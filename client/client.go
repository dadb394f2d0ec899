package client

// The Client is split by concern:
//
//	client.go     the Client, its endpoints and connections, and do, which
//	              runs one call with failover and retries
//	config.go     Config, its defaults and validation
//	kv.go         the key-value calls (Get, Put, Batch, Update, List, ...)
//	workflows.go  the workflow and application node calls
//	leases.go     the lease calls (Grant, KeepAlive, ..., PutWith)
//	session.go    Session: a lease kept alive in the background
//	locks.go      locks, elections (Observe over SSE) and WithFence
//
// conn.go holds one connection, codec.go the glue to api's codec, and
// members.go, admin.go, watch.go and leader.go the rest.

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
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/unrdf/consensus/api"
)

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
	if f, ok := ctx.Value(fenceKey{}).(api.Fence); ok {
		r.Fence = f
	}
	return c.doRequest(ctx, r)
}

// doRequest encodes r and runs it (do).
func (c *Client) doRequest(ctx context.Context, r *api.Request) (response, error) {
	args, nargs := encodeArgs(r)
	return c.do(ctx, r.Op, nargs, args, time.Duration(r.WaitMs)*time.Millisecond)
}

// ClientID returns the id this client's writes carry.
func (c *Client) ClientID() string { return c.id }

// Status describes the node the client is connected to.
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpStatus})
	return resp.status, err
}

// do runs one call with failover and the retries the package
// documentation allows. wait is how long the server may keep the call
// waiting (an acquire's or a campaign's wait), beyond RequestTimeout.
func (c *Client) do(ctx context.Context, op api.Op, nargs int, args []byte, wait time.Duration) (response, error) {
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
	ctx, cancel := context.WithTimeout(ctx, wait+c.cfg.RequestTimeout)
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
