package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unrdf/consensus/bench"
	"github.com/unrdf/consensus/client"
)

// The --watchers mode: while the workloads run, N watchers follow the
// workloads' prefix over GET /v1/watch (Server-Sent Events, one stream
// each) or, with --watch-protocol ws, over /v1/ws (--watches-per-conn
// watches to a connection, as etcd's side carries many watches on one
// gRPC stream), and a probe
// writer (bench.Prober) puts a timestamp under the same prefix every
// bench.ProbeInterval; each watcher notes when each probe reaches it.
// Every write of the workloads reaches every watcher, so this measures the
// cost of the fan-out to the writes (the workload rows) and the delivery
// lag (the probes).

const (
	// watchPrefix is the prefix the watchers follow: every key bench
	// writes.
	watchPrefix = "bench/"
	// probeMarker is in the watch data of a probe.
	probeMarker = `"key":"` + bench.ProbeKey + `","value":`
	// maxBenchWatchers bounds --watchers (bench spreads them over every
	// endpoint).
	maxBenchWatchers = bench.MaxWatchers
	// watchOpenParallel bounds the watches being opened at once.
	watchOpenParallel = 32
	// watchDrainTimeout bounds the wait, after the last probe, for every
	// watcher to have seen it: long, since under 10,000 watchers both
	// systems deliver seconds late, and a shorter wait would cut off the
	// lag's tail.
	watchDrainTimeout = 30 * time.Second
)

// watchReport is the --watchers figures, in the JSON report as "watch".
// Ours: each watcher is an SSE stream (its own TCP connection, as the Go
// client's Client.Watch opens one), from its own loopback source address
// (its own client identity on the server) unless SharedIdentity.
type watchReport = bench.WatchReport

// watchFanout is the running watchers and probe writer.
type watchFanout struct {
	start    time.Time // the probes' time base (monotonic)
	cancel   context.CancelFunc
	watchers []*benchWatcher
	wg       sync.WaitGroup
	prober   *bench.Prober
	// probeHTTP is the probe writer's transport, whose connection stop
	// closes.
	probeHTTP *http.Transport
	// clients carry the watches over /v1/ws, a connection each.
	clients []*client.Client
	report  watchReport
}

// benchWatcher is one SSE stream, or one watch over /v1/ws. Its fields
// are its goroutine's until that goroutine ends.
type benchWatcher struct {
	body      io.ReadCloser   // SSE
	ws        *client.Watcher // /v1/ws
	sights    []bench.ProbeSight
	delivered atomic.Int64
	events    int64
	// ended is set when the stream ends (before stop closes it: on its own).
	ended atomic.Bool
}

// startWatchFanout opens n watches of watchPrefix spread over endpoints
// (the leader first), each waiting for its 200 (or its start over
// /v1/ws), and starts the probe writer on the leader.
func startWatchFanout(ctx context.Context, target benchTarget, endpoints []string, n int, overWS bool, perConn int) (*watchFanout, error) {
	if overWS {
		return startWSWatchFanout(ctx, target, endpoints, n, perConn)
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &watchFanout{start: time.Now(), cancel: cancel}
	f.report.Transport = "sse"
	f.report.Watchers, f.report.Nodes, f.report.Streams = n, min(n, len(endpoints)), n
	f.watchers = make([]*benchWatcher, n)
	shared := make([]bool, n)
	err := openWatches(n, "", func(i int) (err error) {
		f.watchers[i], shared[i], err = openBenchWatch(ctx, target, endpoints[i%len(endpoints)], i)
		return err
	})
	f.report.SharedIdentity = slices.Contains(shared, true)
	if err != nil {
		for _, w := range f.watchers {
			if w != nil {
				w.body.Close()
			}
		}
		cancel()
		return nil, err
	}
	f.run(ctx, target, endpoints[0], (*benchWatcher).read)
	return f, nil
}

// openWatches calls open(i) for i in [0, n), watchOpenParallel at a time,
// and sums up the failures: how many, and the first (how names the
// watches in the message: "" or " over /v1/ws").
func openWatches(n int, how string, open func(i int) error) error {
	sem := make(chan struct{}, watchOpenParallel)
	errs := make([]error, n)
	var opening sync.WaitGroup
	for i := range n {
		opening.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; opening.Done() }()
			errs[i] = open(i)
		}()
	}
	opening.Wait()
	var first error
	failed := 0
	for _, err := range errs {
		if err != nil {
			first = cmp.Or(first, err)
			failed++
		}
	}
	if first != nil {
		return fmt.Errorf("opening %d watches%s: %d failed, the first: %w", n, how, failed, first)
	}
	return nil
}

// run starts a reader per watcher and the prober, which writes through
// leader.
func (f *watchFanout) run(ctx context.Context, target benchTarget, leader string, read func(*benchWatcher, time.Time)) {
	for _, w := range f.watchers {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			read(w, f.start)
		}()
	}
	f.probeHTTP = target.transport(1)
	f.prober = bench.StartProber(ctx, f.start, probeWriter(target, f.probeHTTP, leader))
}

// watchIdentity is the loopback source address of watcher i, so that
// each watcher is its own client on the server (which counts watches per
// IP without a token): 127.1.0.1 and on, 250 a /24.
func watchIdentity(i int) net.IP {
	return net.IPv4(127, byte(1+i/(250*256)), byte(i/250%256), byte(1+i%250))
}

// openBenchWatch opens watcher i's stream on addr. shared reports that it
// could not take its own identity: a token names the client, or addr is
// not an IPv4 loopback address to dial from another one.
func openBenchWatch(ctx context.Context, target benchTarget, addr string, i int) (*benchWatcher, bool, error) {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	host, _, _ := net.SplitHostPort(addr)
	shared := target.token != ""
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil && ip.IsLoopback() {
		dialer.LocalAddr = &net.TCPAddr{IP: watchIdentity(i)}
	} else {
		shared = true
	}
	tr := &http.Transport{DialContext: dialer.DialContext, TLSClientConfig: target.tls, DisableCompression: true}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.url(addr, "/v1/watch?prefix="+watchPrefix), nil)
	if err != nil {
		return nil, shared, err
	}
	target.authorize(req)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, shared, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, shared, fmt.Errorf("watch %d on %s: %s: %s", i, addr, resp.Status, strings.TrimSpace(string(b)))
	}
	return &benchWatcher{body: resp.Body}, shared, nil
}

// read reads the stream until it ends, counting events and timing the
// probes. Only the probe lines are decoded, so a watcher costs the load
// generator a scan of the bytes it reads.
func (w *benchWatcher) read(start time.Time) {
	defer w.body.Close()
	r := bufio.NewReaderSize(w.body, 64<<10)
	partial := false // the line being read did not fit the buffer
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if !partial && bytes.HasPrefix(line, []byte("data: ")) {
				w.events++
			}
			partial = true
			continue
		}
		if err != nil {
			w.ended.Store(true)
			return
		}
		if partial {
			partial = false
			continue
		}
		if !bytes.HasPrefix(line, []byte("data: ")) {
			continue
		}
		w.events++
		at := bytes.Index(line, []byte(probeMarker))
		if at < 0 {
			continue
		}
		digits := line[at+len(probeMarker):]
		end := bytes.IndexAny(digits, ",}")
		if end < 0 {
			continue
		}
		if sight, ok := bench.ReadProbe(digits[:end], start); ok {
			w.sights = append(w.sights, sight)
			w.delivered.Add(1)
		}
	}
}

// probeWriter returns the probe writes of a Prober: a PUT of the time
// sent, as a JSON number, to bench.ProbeKey on the leader, over HTTP
// through tr.
func probeWriter(target benchTarget, tr *http.Transport, leader string) func(context.Context, time.Duration) error {
	hc := &http.Client{Transport: tr}
	return func(ctx context.Context, sent time.Duration) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, target.url(leader, "/v1/kv/"+bench.ProbeKey),
			strings.NewReader(strconv.FormatInt(int64(sent), 10)))
		if err != nil {
			return err
		}
		target.authorize(req)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("probe PUT: %s", resp.Status)
		}
		return nil
	}
}

// stop ends the probes, waits (boundedly) for every watcher to read the
// last one, closes the streams and returns the figures.
func (f *watchFanout) stop() (watchReport, error) {
	acked, probeLat, probeErr := f.prober.Stop()
	f.probeHTTP.CloseIdleConnections()
	bench.WaitDelivered(len(f.watchers), func(i int) int64 { return f.watchers[i].delivered.Load() },
		int64(len(acked)), watchDrainTimeout)
	rep := f.report
	for _, w := range f.watchers {
		if w.ended.Load() {
			rep.Ended++ // before the streams are closed: it ended on its own
		}
	}
	f.cancel()
	for _, w := range f.watchers {
		if w.body != nil {
			w.body.Close()
		}
	}
	for _, c := range f.clients {
		_ = c.Close()
	}
	f.wg.Wait()
	sights := make([][]bench.ProbeSight, len(f.watchers))
	for i, w := range f.watchers {
		sights[i] = w.sights
		rep.Events += w.events
	}
	rep.Summary(sights, acked, probeLat)
	return rep, probeErr
}

// startWSWatchFanout opens n watches of watchPrefix over /v1/ws, perConn
// to a connection (a client of one endpoint), the connections spread over
// endpoints (the leader first), each dialled from its own loopback source
// address when it can (so its own client on the server, which must then
// allow perConn watches per client: serve --max-watches-per-client).
func startWSWatchFanout(ctx context.Context, target benchTarget, endpoints []string, n, perConn int) (*watchFanout, error) {
	ctx, cancel := context.WithCancel(ctx)
	f := &watchFanout{start: time.Now(), cancel: cancel}
	conns := (n + perConn - 1) / perConn
	f.report.Watchers, f.report.Nodes, f.report.Streams, f.report.Transport = n, min(conns, len(endpoints)), conns, "ws"
	f.watchers = make([]*benchWatcher, n)
	fail := func(err error) (*watchFanout, error) {
		for _, c := range f.clients {
			_ = c.Close()
		}
		cancel()
		return nil, err
	}
	for i := range conns {
		addr := endpoints[i%len(endpoints)]
		dialer := &net.Dialer{Timeout: 10 * time.Second}
		host, _, _ := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); ip != nil && ip.To4() != nil && ip.IsLoopback() && target.token == "" {
			dialer.LocalAddr = &net.TCPAddr{IP: watchIdentity(i)}
		} else {
			f.report.SharedIdentity = true
		}
		tr := &http.Transport{DialContext: dialer.DialContext, TLSClientConfig: target.tls, DisableCompression: true}
		c, err := client.New(client.Config{Endpoints: []string{target.url(addr, "")}, Token: target.token,
			WatchOverWS: true, LeaderRefresh: -1, HTTPClient: &http.Client{Transport: tr}})
		if err != nil {
			return fail(err)
		}
		f.clients = append(f.clients, c)
	}
	err := openWatches(n, " over /v1/ws", func(i int) error {
		w, err := f.clients[i/perConn].Watch(ctx, watchPrefix, 0)
		if err != nil {
			return fmt.Errorf("watch %d on %s: %w", i, endpoints[(i/perConn)%len(endpoints)], err)
		}
		f.watchers[i] = &benchWatcher{ws: w}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	f.run(ctx, target, endpoints[0], (*benchWatcher).readWS)
	return f, nil
}

// readWS takes the watch's responses until it ends, counting events and
// timing the probes.
func (w *benchWatcher) readWS(start time.Time) {
	for resp := range w.ws.C() {
		for i := range resp.Events {
			ev := &resp.Events[i]
			w.events++
			if ev.Item.Key != bench.ProbeKey {
				continue
			}
			if sight, ok := bench.ReadProbe(ev.Item.Value, start); ok {
				w.sights = append(w.sights, sight)
				w.delivered.Add(1)
			}
		}
	}
	w.ended.Store(true)
}
