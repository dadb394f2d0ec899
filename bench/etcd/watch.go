package main

// etcd run --watchers N: while the workloads run, N watches of bench/
// through clientv3's Watch, and the probe writes of bench.Prober, as
// `consensus bench --watchers` does for us (bench/watch.go).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/unrdf/consensus/bench"
)

const (
	// watchPrefix is the prefix the watchers follow: every key bench
	// writes.
	watchPrefix = "bench/"
	// defaultWatchesPerStream is how many watches share one client, and
	// so one gRPC connection and one Watch stream (clientv3 carries every
	// watch of a client whose contexts have the same metadata over one
	// stream).
	defaultWatchesPerStream = 1000
	// watchOpenParallel bounds the watches being created at once.
	watchOpenParallel = 64
	// watchDrainTimeout bounds the wait, after the last probe, for every
	// watcher to have seen it: long, since under 10,000 watchers both
	// systems deliver seconds late, and a shorter wait would cut off the
	// lag's tail.
	watchDrainTimeout = 30 * time.Second
)

// watchFanout is the running watchers and probe writer.
type watchFanout struct {
	start    time.Time
	cancel   context.CancelFunc
	clients  []*clientv3.Client // the watchers' clients, then the probe writer's
	watchers []*etcdWatcher
	wg       sync.WaitGroup
	prober   *bench.Prober
	stopping atomic.Bool
	report   bench.WatchReport
}

// etcdWatcher is one watch. Its fields are its goroutine's until that
// goroutine ends.
type etcdWatcher struct {
	wch       clientv3.WatchChan
	sights    []bench.ProbeSight
	delivered atomic.Int64
	events    int64
	// ended is set when the watch ends before the run does.
	ended atomic.Bool
}

// checkWatchFlags reports what is wrong with --watchers and
// --watches-per-stream.
func checkWatchFlags(watchers, perStream int) error {
	switch {
	case watchers < 0 || watchers > bench.MaxWatchers:
		return fmt.Errorf("--watchers: %d is not between 0 and %d", watchers, bench.MaxWatchers)
	case perStream < 1 || perStream > bench.MaxWatchers:
		return fmt.Errorf("--watches-per-stream: %d is not between 1 and %d", perStream, bench.MaxWatchers)
	}
	return nil
}

// watchStreams is how many clients (gRPC connections, each with one
// Watch stream) carry n watches at perStream a stream.
func watchStreams(n, perStream int) int { return (n + perStream - 1) / perStream }

// startWatchFanout creates n watches of watchPrefix over
// watchStreams(n, perStream) clients, client k on endpoints[k %
// len(endpoints)] (the leader first), waits until etcd has created each,
// and starts the probe writer on the leader, through a client of its own.
func startWatchFanout(ctx context.Context, endpoints []string, n, perStream int) (*watchFanout, error) {
	ctx, cancel := context.WithCancel(ctx)
	f := &watchFanout{start: time.Now(), cancel: cancel}
	streams := watchStreams(n, perStream)
	f.report.Watchers, f.report.Nodes, f.report.Streams = n, min(streams, len(endpoints)), streams
	fail := func(err error) (*watchFanout, error) {
		cancel()
		f.closeClients()
		return nil, err
	}
	for k := range streams {
		cli, err := newClient([]string{endpoints[k%len(endpoints)]})
		if err != nil {
			return fail(err)
		}
		f.clients = append(f.clients, cli)
	}
	f.watchers = make([]*etcdWatcher, n)
	errs := make([]error, n)
	sem := make(chan struct{}, watchOpenParallel)
	var opening sync.WaitGroup
	for i := range n {
		opening.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; opening.Done() }()
			f.watchers[i], errs[i] = openWatch(ctx, f.clients[i%streams])
		}()
	}
	opening.Wait()
	if err := errors.Join(errs...); err != nil {
		return fail(fmt.Errorf("creating %d watches: %w", n, err))
	}
	probeCli, err := newClient(endpoints[:1])
	if err != nil {
		return fail(err)
	}
	f.clients = append(f.clients, probeCli)
	for _, w := range f.watchers {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			w.read(f.start, &f.stopping)
		}()
	}
	f.prober = bench.StartProber(ctx, f.start, func(ctx context.Context, sent time.Duration) error {
		_, err := probeCli.Put(ctx, bench.ProbeKey, strconv.FormatInt(int64(sent), 10))
		return err
	})
	return f, nil
}

// openWatch creates one watch of watchPrefix on cli and returns once etcd
// says it is created.
func openWatch(ctx context.Context, cli *clientv3.Client) (*etcdWatcher, error) {
	wch := cli.Watch(ctx, watchPrefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	select {
	case resp, ok := <-wch:
		if !ok {
			return nil, errors.Join(errors.New("watch not created"), ctx.Err())
		}
		if err := resp.Err(); err != nil {
			return nil, err
		}
		if !resp.Created {
			return nil, errors.New("watch: an answer before the created notice")
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &etcdWatcher{wch: wch}, nil
}

// read reads the watch until it ends, counting events and timing the
// probes.
func (w *etcdWatcher) read(start time.Time, stopping *atomic.Bool) {
	for resp := range w.wch {
		if resp.Err() != nil {
			break
		}
		for _, ev := range resp.Events {
			w.events++
			if string(ev.Kv.Key) != bench.ProbeKey || ev.Type != clientv3.EventTypePut {
				continue
			}
			if sight, ok := bench.ReadProbe(ev.Kv.Value, start); ok {
				w.sights = append(w.sights, sight)
				w.delivered.Add(1)
			}
		}
	}
	if !stopping.Load() {
		w.ended.Store(true)
	}
	// Drain what the client still hands over after a cancel.
	for range w.wch {
	}
}

// stop ends the probes, waits (boundedly) for every watcher to read the
// last one, cancels the watches and returns the figures.
func (f *watchFanout) stop() (bench.WatchReport, error) {
	acked, probeLat, probeErr := f.prober.Stop()
	bench.WaitDelivered(len(f.watchers), func(i int) int64 { return f.watchers[i].delivered.Load() },
		int64(len(acked)), watchDrainTimeout)
	rep := f.report
	f.stopping.Store(true)
	for _, w := range f.watchers {
		if w.ended.Load() {
			rep.Ended++
		}
	}
	f.cancel()
	f.closeClients()
	f.wg.Wait()
	sights := make([][]bench.ProbeSight, len(f.watchers))
	for i, w := range f.watchers {
		sights[i] = w.sights
		rep.Events += w.events
	}
	rep.Summary(sights, acked, probeLat)
	return rep, probeErr
}

func (f *watchFanout) closeClients() {
	for _, c := range f.clients {
		_ = c.Close()
	}
}

// writeWatchReport prints the --watchers figures under the table.
func writeWatchReport(w io.Writer, r bench.WatchReport) {
	fmt.Fprintf(w, "\nwatchers: %d clientv3 watches of %s over %d gRPC watch streams on %d nodes; %d ended early; %d events read\n",
		r.Watchers, watchPrefix, r.Streams, r.Nodes, r.Ended, r.Events)
	fmt.Fprintf(w, "probes: %d writes every %v, delivered %d of %d; delivery lag p50 %s p90 %s p99 %s max %s; probe write p50 %s p99 %s\n",
		r.Probes, bench.ProbeInterval, r.Delivered, int64(r.Probes)*int64(r.Watchers),
		bench.FormatDuration(r.Lag.P50), bench.FormatDuration(r.Lag.P90), bench.FormatDuration(r.Lag.P99),
		bench.FormatDuration(r.Lag.Max), bench.FormatDuration(r.ProbeWrite.P50), bench.FormatDuration(r.ProbeWrite.P99))
	fmt.Fprintf(w, "delivery lag from the probe write's acknowledgement: p50 %s p90 %s p99 %s max %s\n",
		bench.FormatDuration(r.AckLag.P50), bench.FormatDuration(r.AckLag.P90), bench.FormatDuration(r.AckLag.P99),
		bench.FormatDuration(r.AckLag.Max))
}
