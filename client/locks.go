package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/unrdf/consensus/api"
)

// Codes of the lock and election answers (api's).
const (
	CodeLocked       = api.CodeLocked
	CodeNotHolder    = api.CodeNotHolder
	CodeFenced       = api.CodeFenced
	CodeTooManyLocks = api.CodeTooManyLocks
	CodeLockNotFound = api.CodeLockNotFound
)

// MaxLockWait bounds the wait of Lock and Campaign (the server's limit).
const MaxLockWait = 10 * time.Minute

type fenceKey struct{}

// WithFence returns ctx carrying fence f: every write made with it (Put,
// PutIf, PutWith, Delete, DeleteIf, Batch, the workflow and node writes,
// Grant, Revoke, and the lock and election writes) is applied only if lock
// f.Lock is held with token f.Token when the write is applied; otherwise
// it fails with an error wrapping kv.ErrFenced and nothing is changed.
// f.Token is the token Lock or Campaign returned. A zero f (no lock)
// removes the fence.
func WithFence(ctx context.Context, f api.Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// waitMs returns wait in whole milliseconds, rounded up, or an error
// wrapping ErrBadRequest when it is negative or over MaxLockWait.
func waitMs(wait time.Duration) (int64, error) {
	if wait < 0 || wait > MaxLockWait {
		return 0, fmt.Errorf("wait %v: want 0 (try once) to %v: %w", wait, MaxLockWait, api.ErrBadRequest)
	}
	return int64((wait + time.Millisecond - 1) / time.Millisecond), nil
}

// Lock takes lock name for lease (Grant, Session.Lease), waiting up to
// wait behind the leases ahead of it, first come first served (0: try
// once). It returns the lock with its fencing token, strictly greater than
// any earlier holder's: pass it to WithFence to fence writes by it, and to
// Unlock. When the lock stays held for the whole wait it fails with an
// error wrapping kv.ErrLocked (the lease leaves the queue). The lock is
// released by Unlock, or when the lease expires or is revoked. A lease that
// holds the lock already gets its token again. A wait that is negative or
// over MaxLockWait fails with ErrBadRequest before anything is sent. The
// call may take wait plus Config.RequestTimeout (the caller's context
// permitting), and holds one of the connection's request slots meanwhile,
// not the connection.
func (c *Client) Lock(ctx context.Context, name string, lease api.LeaseID, wait time.Duration) (api.Lock, error) {
	r, err := lockRequest(api.OpLockAcquire, name, lease, wait)
	if err != nil {
		return api.Lock{}, err
	}
	resp, err := c.doWrite(ctx, &r)
	return resp.lock, err
}

func lockRequest(op api.Op, name string, lease api.LeaseID, wait time.Duration) (api.Request, error) {
	if err := checkLeaseID(lease); err != nil {
		return api.Request{}, fmt.Errorf("client: %s %q: %w", op, name, err)
	}
	ms, err := waitMs(wait)
	if err != nil {
		return api.Request{}, fmt.Errorf("client: %s %q: %w", op, name, err)
	}
	return api.Request{Op: op, Key: name, Lease: lease, WaitMs: ms}, nil
}

// Unlock releases lock name held with token; an error wrapping
// kv.ErrNotHolder if that token does not hold it (any more).
func (c *Client) Unlock(ctx context.Context, name string, token int64) error {
	_, err := c.doWrite(ctx, &api.Request{Op: api.OpLockRelease, Key: name, Token: token})
	return err
}

// LockState returns lock name: its holder's token and lease, and how
// many leases wait for it; an error wrapping kv.ErrLockNotFound if nobody
// holds or waits for it.
func (c *Client) LockState(ctx context.Context, name string, opts ...ReadOption) (api.Lock, error) {
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpLockGet, Key: name, Consistency: readConsistency(opts)})
	return resp.lock, err
}

// Campaign runs for leader of election name with lease and value (one
// JSON value, or nil), waiting up to wait for the leaders ahead of it (0:
// try once; kv.ErrLocked if there is a leader). It returns the leadership
// won, whose Token fences writes (WithFence) and names it to Proclaim and
// Resign. Leadership ends with Resign, or when the lease expires or is
// revoked.
func (c *Client) Campaign(ctx context.Context, name string, lease api.LeaseID, value []byte, wait time.Duration) (api.Lock, error) {
	r, err := lockRequest(api.OpCampaign, name, lease, wait)
	if err != nil {
		return api.Lock{}, err
	}
	r.Value = value
	resp, err := c.doWrite(ctx, &r)
	return resp.lock, err
}

// Proclaim sets the value of the leadership of election name held with
// token; kv.ErrNotHolder if that token does not lead it.
func (c *Client) Proclaim(ctx context.Context, name string, token int64, value []byte) error {
	_, err := c.doWrite(ctx, &api.Request{Op: api.OpProclaim, Key: name, Token: token, Value: value})
	return err
}

// Resign gives up the leadership of election name held with token; the
// next candidate in line becomes leader. kv.ErrNotHolder if that token
// does not lead it.
func (c *Client) Resign(ctx context.Context, name string, token int64) error {
	_, err := c.doWrite(ctx, &api.Request{Op: api.OpResign, Key: name, Token: token})
	return err
}

// Leader returns the leader of election name (its token, lease and
// value); kv.ErrLockNotFound if there is none.
func (c *Client) Leader(ctx context.Context, name string, opts ...ReadOption) (api.Lock, error) {
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpLeader, Key: name, Consistency: readConsistency(opts)})
	return resp.lock, err
}

// Lock takes lock name for the session's lease (Client.Lock); it is
// released when the session ends, if not before.
func (s *Session) Lock(ctx context.Context, name string, wait time.Duration) (api.Lock, error) {
	return s.c.Lock(ctx, name, s.lease, wait)
}

// Campaign runs for leader of election name with the session's lease
// (Client.Campaign).
func (s *Session) Campaign(ctx context.Context, name string, value []byte, wait time.Duration) (api.Lock, error) {
	return s.c.Campaign(ctx, name, s.lease, value, wait)
}

// Observe follows the leadership of election name over GET
// /v1/elections/{name}/observe (Server-Sent Events): the channel receives
// the leader now, and then each change, nil while there is none. When a
// stream breaks it opens one on the next endpoint (a leader that did not
// change is not sent again). The channel is closed when ctx is done, the
// Client is closed, or MaxAttempts reconnects in a row fail. Observe
// returns once a stream is open, or the error that kept one from opening.
func (c *Client) Observe(ctx context.Context, name string) (<-chan *api.Lock, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("client: observe: %w", ErrClosed)
	}
	octx, cancel := context.WithCancelCause(ctx)
	o := &observer{c: c, name: name, ctx: octx, endpoint: int(c.preferred.Load() % int64(len(c.endpoints)))}
	stream, err := o.reconnect()
	if err != nil {
		cancel(err)
		return nil, err
	}
	out := make(chan *api.Lock, 8)
	stopOnClose := context.AfterFunc(c.ctx, func() { cancel(ErrClosed) })
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer stopOnClose()
		defer cancel(nil)
		defer close(out)
		var last *api.Lock
		sent := false
		for {
			err := o.follow(stream, func(l *api.Lock) bool {
				if sent && sameLeader(last, l) {
					return true
				}
				select {
				case out <- l:
					last, sent = l, true
					return true
				case <-octx.Done():
					return false
				}
			})
			stream.close()
			if err != nil || octx.Err() != nil {
				return
			}
			o.endpoint++
			if stream, err = o.reconnect(); err != nil {
				return
			}
		}
	}()
	return out, nil
}

func sameLeader(a, b *api.Lock) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Token == b.Token && a.Lease == b.Lease && bytes.Equal(a.Value, b.Value)
}

// observer opens an election's observe streams.
type observer struct {
	c        *Client
	name     string
	ctx      context.Context
	endpoint int
}

// reconnect opens a stream, trying the endpoints in turn with backoff, at
// most MaxAttempts times in a row.
func (o *observer) reconnect() (*watchStream, error) {
	return o.c.reconnectSSE(o.ctx, &o.endpoint, o.open)
}

// open sends one GET /v1/elections/{name}/observe. retry says whether
// another attempt may do better.
func (o *observer) open() (stream *watchStream, retry bool, err error) {
	ep := o.c.endpoints[o.endpoint%len(o.c.endpoints)]
	target, err := observeURL(ep.url, o.name)
	if err != nil {
		return nil, false, err
	}
	resp, cancel, retry, err := o.c.openSSE(o.ctx, target, "observe", nil)
	if err != nil {
		return nil, retry, err
	}
	return &watchStream{body: resp.Body, r: bufio.NewReader(resp.Body), cancel: cancel, endpoint: target}, false, nil
}

// follow hands each leader event of s to deliver until the stream ends
// (nil: reconnect) or deliver returns false or the stream is bad (an
// error: stop).
func (o *observer) follow(s *watchStream, deliver func(*api.Lock) bool) error {
	var (
		event string
		data  []byte
	)
	for {
		line, err := readLine(s.r, int(o.c.cfg.MaxFrameBytes))
		if err != nil {
			if cause := context.Cause(o.ctx); cause != nil {
				return cause
			}
			if err == errLineTooLong {
				return fmt.Errorf("client: observe on %s: %w", s.endpoint, err)
			}
			return nil
		}
		if len(line) == 0 {
			if event == "leader" && len(data) > 0 {
				var l *api.Lock
				if err := json.Unmarshal(data, &l); err != nil {
					return fmt.Errorf("client: observe on %s: leader event %q: %w", s.endpoint, data, err)
				}
				if !deliver(l) {
					return context.Cause(o.ctx)
				}
			}
			event, data = "", data[:0]
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			event = string(value)
		case "data":
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, value...)
		}
	}
}

// observeURL turns an endpoint's /v1/ws URL into election name's GET
// /v1/elections/{name}/observe URL.
func observeURL(wsURL, name string) (string, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return "", fmt.Errorf("client: endpoint %q: %w", wsURL, err)
	}
	if u.Scheme == "wss" {
		u.Scheme = "https"
	} else {
		u.Scheme = "http"
	}
	base, _ := strings.CutSuffix(u.Path, "/v1/ws")
	u.Path = base + "/v1/elections/" + name + "/observe"
	u.RawPath = base + "/v1/elections/" + url.PathEscape(name) + "/observe"
	u.RawQuery = ""
	return u.String(), nil
}
