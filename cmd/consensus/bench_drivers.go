package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/bench"
	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/internal/stages"
	"github.com/unrdf/consensus/kv"
)

// newDriver returns the driver of protocol against endpoints (the first is
// used; ws fails over to the others), sized for conc clients.
func newDriver(protocol string, target benchTarget, endpoints []string, conc int) (bench.Driver, func(), error) {
	if protocol == "http" {
		tr := target.transport(conc)
		d := &httpDriver{hc: &http.Client{Transport: tr}, base: target.url(endpoints[0], "/v1/kv/"), target: target}
		return d, tr.CloseIdleConnections, nil
	}
	cfg := client.Config{Token: target.token}
	for _, ep := range endpoints {
		cfg.Endpoints = append(cfg.Endpoints, target.url(ep, ""))
	}
	var tr *http.Transport
	if target.tls != nil {
		tr = target.transport(1)
		cfg.HTTPClient = &http.Client{Transport: tr}
	}
	c, err := client.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	return wsDriver{c}, func() {
		_ = c.Close()
		if tr != nil {
			tr.CloseIdleConnections()
		}
	}, nil
}

// wsDriver drives the Go client over /v1/ws: one multiplexed connection
// shared by every worker.
type wsDriver struct{ c *client.Client }

func (d wsDriver) Put(ctx context.Context, key string, value []byte) error {
	_, err := d.c.Put(ctx, key, value)
	return err
}

func (d wsDriver) Get(ctx context.Context, key string, linearizable bool) error {
	if linearizable {
		_, err := d.c.Get(ctx, key)
		return err
	}
	_, err := d.c.Get(ctx, key, client.WithConsistency(kv.Local))
	return err
}

// httpDriver drives the JSON API over HTTP/1.1 with keep-alive: each
// in-flight request holds its own connection.
type httpDriver struct {
	hc     *http.Client
	base   string // http://host:port/v1/kv/ (or https)
	target benchTarget
}

func (d *httpDriver) Put(ctx context.Context, key string, value []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, d.base+key, bytes.NewReader(value))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return d.do(req)
}

func (d *httpDriver) Get(ctx context.Context, key string, linearizable bool) error {
	u := d.base + key
	if !linearizable {
		u += "?consistency=local"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	return d.do(req)
}

func (d *httpDriver) do(req *http.Request) error {
	d.target.authorize(req)
	if stages.Enabled {
		req = traceStages(req)
		defer stages.Mark("client_done", 0)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(body))
}

// traceStages marks, for stage timing (internal/stages), when req is
// handed to net/http, about to be flushed to the connection (its headers
// written to the buffer, which a small body joins), and its answer's
// first byte read: the points the Go client marks on its WebSocket.
func traceStages(req *http.Request) *http.Request {
	stages.Mark("client_call", 0)
	return req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		WroteHeaders:         func() { stages.Mark("client_write", 0) },
		GotFirstResponseByte: func() { stages.Mark("client_read", 0) },
	}))
}

// statusClient fetches /v1/status; short timeouts, as it polls.
var statusClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableCompression: true}}

// fetchStatus asks a node of the local cluster for its status.
func fetchStatus(ctx context.Context, addr string) (consensus.Status, error) {
	return fetchStatusOf(ctx, statusClient, benchTarget{}, addr)
}

// fetchStatusOf asks the node at addr for its status, through hc.
func fetchStatusOf(ctx context.Context, hc *http.Client, target benchTarget, addr string) (consensus.Status, error) {
	var st consensus.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.url(addr, "/v1/status"), nil)
	if err != nil {
		return st, err
	}
	target.authorize(req)
	resp, err := hc.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		if client.IsHTTPSAnswer(resp.StatusCode, body) {
			return st, &refusedError{status: resp.StatusCode, https: true}
		}
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(body, &eb)
		return st, fmt.Errorf("status of %s: %w", addr, &refusedError{status: resp.StatusCode, code: eb.Error.Code, message: eb.Error.Message})
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st)
	return st, err
}

// leaderFirst returns endpoints with the leader's first, and its name, so
// that the measurement is of the leader and not of follower forwarding.
// It waits up to 30 seconds for a leader.
func leaderFirst(ctx context.Context, target benchTarget, endpoints []string) ([]string, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hc := statusClient
	if target.tls != nil {
		tr := target.transport(1)
		defer tr.CloseIdleConnections()
		hc = &http.Client{Timeout: time.Second, Transport: tr}
	}
	var last error
	for {
		for i, ep := range endpoints {
			st, err := fetchStatusOf(ctx, hc, target, ep)
			var refused *refusedError
			if errors.As(err, &refused) && refused.final() {
				return nil, "", err // every member would say the same
			}
			if err != nil && ctx.Err() == nil {
				last = err
			}
			if err == nil && st.IsLeader {
				out := append([]string{ep}, endpoints[:i]...)
				return append(out, endpoints[i+1:]...), st.NodeID, nil
			}
		}
		if err := sleepOrDone(ctx, 50*time.Millisecond); err != nil {
			if last != nil {
				err = fmt.Errorf("%w (last: %w)", err, last)
			}
			return nil, "", fmt.Errorf("no leader among %s: %w", strings.Join(endpoints, ","), err)
		}
	}
}

func sleepOrDone(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// The lease and lock workloads (bench.CoordWorkloads) run over the Go
// client only: wsDriver is a bench.CoordDriver, httpDriver is not.
var _ bench.CoordDriver = wsDriver{}

// NewContender opens a session (a lease of ttl, kept alive in the
// background) for one contender.
func (d wsDriver) NewContender(ctx context.Context, ttl time.Duration) (bench.Contender, error) {
	s, err := client.NewSession(ctx, d.c, ttl)
	if err != nil {
		return nil, err
	}
	return wsContender{c: d.c, s: s}, nil
}

// PutWithLease grants a lease of ttl and puts key with it; the deadline
// is the grant's answer plus the time to live granted (api.LeaseTTLFloorMs
// at least).
func (d wsDriver) PutWithLease(ctx context.Context, key string, value []byte, ttl time.Duration) (time.Time, error) {
	l, err := d.c.Grant(ctx, ttl)
	if err != nil {
		return time.Time{}, err
	}
	deadline := time.Now().Add(time.Duration(l.TTLMs) * time.Millisecond)
	_, err = d.c.PutWith(ctx, key, value, client.PutOptions{Lease: l.ID})
	return deadline, err
}

// WatchDeletes watches prefix from the next write on and passes on the
// key of each delete.
func (d wsDriver) WatchDeletes(ctx context.Context, prefix string) (<-chan string, error) {
	w, err := d.c.Watch(ctx, prefix, 0)
	if err != nil {
		return nil, err
	}
	out := make(chan string)
	go func() {
		defer close(out)
		defer w.Close()
		for resp := range w.C() {
			for _, ev := range resp.Events {
				if ev.Type != api.EventDelete {
					continue
				}
				select {
				case out <- ev.Item.Key:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// wsContender is one lock or keepalive contender: a session of its own on
// the shared client.
type wsContender struct {
	c *client.Client
	s *client.Session
}

// LockUnlock waits for lock name as long as ctx allows, then releases it.
func (k wsContender) LockUnlock(ctx context.Context, name string) error {
	wait := client.MaxLockWait
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, max(time.Until(dl).Truncate(time.Millisecond), 0))
	}
	l, err := k.s.Lock(ctx, name, wait)
	if err != nil {
		return err
	}
	return k.c.Unlock(ctx, name, l.Token)
}

func (k wsContender) KeepAlive(ctx context.Context) error {
	_, err := k.c.KeepAlive(ctx, k.s.Lease())
	return err
}

func (k wsContender) Close(ctx context.Context) error { return k.s.Close(ctx) }

// The task queue workloads (bench.QueueWorkloads) run over the Go client
// only, as the lease and lock workloads do.
var _ bench.QueueDriver = wsDriver{}

// Enqueue adds task id to queue.
func (d wsDriver) Enqueue(ctx context.Context, queue, id string, data []byte) error {
	_, err := d.c.Queue(queue).Enqueue(ctx, data, client.EnqueueOptions{ID: id})
	return err
}

// Ready counts queue's ready tasks (a linearizable read).
func (d wsDriver) Ready(ctx context.Context, queue string) (int, error) {
	st, err := d.c.Queue(queue).Stats(ctx)
	return st.Ready, err
}

// NewQueueWorker returns a worker of queue: each claim is a lease of ttl
// of its own, as client.Worker's claims are.
func (d wsDriver) NewQueueWorker(_ context.Context, queue, name string, ttl time.Duration) (bench.QueueWorker, error) {
	return wsQueueWorker{q: d.c.Queue(queue), name: name, ttl: ttl}, nil
}

// ClaimAbandoned claims the next task of queue with a claim of ttl that
// nothing heartbeats; the deadline is the claim's answer plus ttl (the
// lease's countdown starts before the answer, so the deadline is late by
// up to the claim's answer time: the lateness measured is a lower bound).
func (d wsDriver) ClaimAbandoned(ctx context.Context, queue string, ttl time.Duration) (string, time.Time, error) {
	c, err := d.c.Queue(queue).Claim(ctx, "bench-dies", ttl, 0)
	if err != nil {
		return "", time.Time{}, err
	}
	return c.Task.ID, time.Now().Add(ttl), nil
}

// wsQueueWorker is one worker of a queue on the shared client.
type wsQueueWorker struct {
	q    *client.Queue
	name string
	ttl  time.Duration
}

func (w wsQueueWorker) Claim(ctx context.Context, wait time.Duration) (bench.QueueClaim, error) {
	c, err := w.q.Claim(ctx, w.name, w.ttl, wait.Truncate(time.Millisecond))
	if errors.Is(err, client.ErrNoTask) {
		return bench.QueueClaim{}, fmt.Errorf("%w: %w", bench.ErrNoTask, err)
	}
	return bench.QueueClaim{ID: c.Task.ID, Epoch: c.Epoch}, err
}

func (w wsQueueWorker) Complete(ctx context.Context, c bench.QueueClaim) error {
	return w.q.Complete(ctx, c.ID, c.Epoch, nil)
}

func (w wsQueueWorker) Close(context.Context) error { return nil }
