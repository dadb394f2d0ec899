// Command etcd drives etcd with the workloads of `consensus bench`, through
// etcd's own Go client, and compares the results with ours. It is its own
// module so that etcd's client never enters the main module's go.mod.
//
//	etcd wait    --endpoints 127.0.0.1:2379,...            # until there is a leader
//	etcd run     --endpoints ... [bench flags] [--json]    # measure etcd
//	etcd compare --etcd etcd.json --ours ours.json,...     # the side-by-side table
//	etcd fill    --endpoints ... --pids e1=PID,... --keys N  # memory after N keys
//
// scripts/bench-etcd.sh runs the whole comparison, against the etcd server
// that cmd/etcd builds from this module's go.mod (cmd/etcdctl is its
// etcdctl, for poking at a run by hand).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/unrdf/consensus/bench"
)

const usage = `Usage:
  etcd wait    --endpoints host:port,... [--timeout 30s]
  etcd run     --endpoints host:port,... [bench flags] [--json]
  etcd compare --etcd report.json,... --ours report.json,...
  etcd fill    --endpoints host:port,... --pids name=pid,... [--data name=dir,...] [--keys N] [--value-size B] [--json]
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "wait":
		return waitCmd(ctx, args[1:], stderr)
	case "run":
		return runCmd(ctx, args[1:], stdout, stderr)
	case "compare":
		return compareCmd(args[1:], stdout, stderr)
	case "fill":
		return fillCmd(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
}

// loopbackEndpoints parses host:port,... and refuses anything but
// loopback addresses: this driver only ever loads this machine.
func loopbackEndpoints(s string) ([]string, error) {
	var out []string
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimPrefix(strings.TrimSpace(e), "http://")
		host, _, err := net.SplitHostPort(e)
		if err != nil {
			return nil, fmt.Errorf("--endpoints: %q is not host:port", e)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("--endpoints: %q is not a loopback address", e)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, errors.New("--endpoints: none")
	}
	return out, nil
}

func newClient(endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}

// leaderFirst returns endpoints with the leader's first and etcd's
// version, once every endpoint answers and one of them leads.
func leaderFirst(ctx context.Context, endpoints []string, timeout time.Duration) ([]string, string, error) {
	cli, err := newClient(endpoints)
	if err != nil {
		return nil, "", err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		leader, version := -1, ""
		for i, ep := range endpoints {
			sctx, scancel := context.WithTimeout(ctx, time.Second)
			st, err := cli.Status(sctx, ep)
			scancel()
			if err != nil {
				last = err
				leader = -2
				break
			}
			version = st.Version
			if st.Leader != 0 && st.Leader == st.Header.MemberId {
				leader = i
			}
		}
		if leader >= 0 {
			out := append([]string{endpoints[leader]}, endpoints[:leader]...)
			return append(out, endpoints[leader+1:]...), version, nil
		}
		select {
		case <-ctx.Done():
			return nil, "", fmt.Errorf("no etcd leader among %s within %v: %w", strings.Join(endpoints, ","), timeout, errors.Join(last, ctx.Err()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func waitCmd(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("wait", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoints := fs.String("endpoints", "", "etcd client addresses, host:port,...")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	eps, err := loopbackEndpoints(*endpoints)
	if err != nil {
		fmt.Fprintln(stderr, "etcd wait:", err)
		return 2
	}
	if _, _, err := leaderFirst(ctx, eps, *timeout); err != nil {
		fmt.Fprintln(stderr, "etcd wait:", err)
		return 1
	}
	return 0
}

// driver is etcd's client as bench drives it: one client, one gRPC
// connection (HTTP/2, multiplexed), to the leader. With keepAliveStream,
// a contender's keepalives go over one LeaseKeepAlive stream of its own,
// as clientv3's KeepAlive sends them, instead of KeepAliveOnce.
type driver struct {
	cli             *clientv3.Client
	keepAliveStream bool
	// reaper serves the queue workloads (queue.go); nil without them.
	reaper *reaper
}

func (d driver) Put(ctx context.Context, key string, value []byte) error {
	_, err := d.cli.Put(ctx, key, string(value))
	return err
}

func (d driver) Get(ctx context.Context, key string, linearizable bool) error {
	var opts []clientv3.OpOption
	if !linearizable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := d.cli.Get(ctx, key, opts...)
	if err != nil {
		return err
	}
	if len(resp.Kvs) != 1 {
		return fmt.Errorf("get %s: key not found", key)
	}
	return nil
}

// The lease and lock workloads (bench.CoordWorkloads), through clientv3's
// lease API and its concurrency package, as etcd's users take locks.
var _ bench.CoordDriver = driver{}

// ttlSeconds is ttl in etcd's unit, whole seconds (bench.Options checks
// that it is one).
func ttlSeconds(ttl time.Duration) int64 { return int64(ttl / time.Second) }

// NewContender grants a lease of ttl (bounded by ctx) and opens a
// concurrency.Session on it, which keeps it alive over clientv3's
// KeepAlive stream.
func (d driver) NewContender(ctx context.Context, ttl time.Duration) (bench.Contender, error) {
	resp, err := d.cli.Grant(ctx, ttlSeconds(ttl))
	if err != nil {
		return nil, err
	}
	// Not concurrency.WithContext(ctx): the session's keepalives would
	// stop with ctx, which only bounds this setup.
	s, err := concurrency.NewSession(d.cli, concurrency.WithLease(resp.ID))
	if err != nil {
		return nil, err
	}
	k := &contender{cli: d.cli, s: s}
	if d.keepAliveStream {
		k.stream = &keepAliveStream{lease: pb.NewLeaseClient(d.cli.ActiveConnection())}
	}
	return k, nil
}

// PutWithLease grants a lease of ttl and puts key with it; the deadline
// is the grant's answer plus the time to live granted (etcd raises a TTL
// below its minimum, 1.5 election timeouts rounded up to a second).
func (d driver) PutWithLease(ctx context.Context, key string, value []byte, ttl time.Duration) (time.Time, error) {
	resp, err := d.cli.Grant(ctx, ttlSeconds(ttl))
	if err != nil {
		return time.Time{}, err
	}
	deadline := time.Now().Add(time.Duration(resp.TTL) * time.Second)
	_, err = d.cli.Put(ctx, key, string(value), clientv3.WithLease(resp.ID))
	return deadline, err
}

// WatchDeletes watches the keys under prefix for deletes, and returns once
// etcd has created the watch.
func (d driver) WatchDeletes(ctx context.Context, prefix string) (<-chan string, error) {
	wctx, cancel := context.WithCancel(ctx)
	wch := d.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithFilterPut(), clientv3.WithCreatedNotify())
	select {
	case resp, ok := <-wch:
		if !ok || resp.Err() != nil || !resp.Created {
			cancel()
			if ok && resp.Err() != nil {
				return nil, resp.Err()
			}
			return nil, errors.Join(errors.New("watch not created"), ctx.Err())
		}
	case <-ctx.Done():
		cancel()
		return nil, ctx.Err()
	}
	out := make(chan string)
	go func() {
		defer close(out)
		defer cancel()
		for resp := range wch {
			if resp.Err() != nil {
				return
			}
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypeDelete {
					continue
				}
				select {
				case out <- string(ev.Kv.Key):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// contender is one lock or keepalive contender: a session of its own on
// the shared client.
type contender struct {
	cli    *clientv3.Client
	s      *concurrency.Session
	stream *keepAliveStream // nil: KeepAliveOnce
}

// LockUnlock takes lock name as concurrency.Mutex does (a key under
// name/ with the session's lease; wait for the deletes of the keys
// before it), then releases it.
func (k *contender) LockUnlock(ctx context.Context, name string) error {
	m := concurrency.NewMutex(k.s, name+"/")
	if err := m.Lock(ctx); err != nil {
		return err
	}
	return m.Unlock(ctx)
}

// KeepAlive renews the session's lease with KeepAliveOnce (one
// LeaseKeepAlive stream opened, used once and closed per call) or over the
// contender's own stream.
func (k *contender) KeepAlive(ctx context.Context) error {
	if k.stream != nil {
		return k.stream.keepAlive(ctx, k.s.Lease())
	}
	_, err := k.cli.KeepAliveOnce(ctx, k.s.Lease())
	return err
}

// Close ends the session and revokes its lease (bounded by the lease's
// TTL, clientv3's choice).
func (k *contender) Close(context.Context) error {
	if k.stream != nil {
		k.stream.close()
	}
	return k.s.Close()
}

// keepAliveStream is one LeaseKeepAlive stream, opened at the first
// keepalive: each keepalive is one request on it and its answer. One
// goroutine uses it at a time (its contender's worker).
type keepAliveStream struct {
	lease  pb.LeaseClient
	cancel context.CancelFunc
	stream pb.Lease_LeaseKeepAliveClient
}

func (s *keepAliveStream) keepAlive(ctx context.Context, id clientv3.LeaseID) error {
	if s.stream == nil {
		sctx, cancel := context.WithCancel(context.Background())
		stream, err := s.lease.LeaseKeepAlive(sctx)
		if err != nil {
			cancel()
			return err
		}
		s.stream, s.cancel = stream, cancel
	}
	// Send and Recv do not take ctx: wait for them apart, and drop the
	// stream when ctx ends first.
	st := s.stream
	done := make(chan error, 1)
	go func() {
		if err := st.Send(&pb.LeaseKeepAliveRequest{ID: int64(id)}); err != nil {
			done <- err
			return
		}
		resp, err := st.Recv()
		if err == nil && resp.TTL <= 0 {
			err = fmt.Errorf("lease %x not found", id)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			s.close()
		}
		return err
	case <-ctx.Done():
		s.close()
		<-done
		return ctx.Err()
	}
}

func (s *keepAliveStream) close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.stream, s.cancel = nil, nil
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := bench.DefaultOptions()
	o.Register(fs)
	endpoints := fs.String("endpoints", "", "etcd client addresses, host:port,... (the leader's is used)")
	asJSON := fs.Bool("json", false, "print one JSON report on stdout instead of a table")
	keepAliveStream := fs.Bool("keepalive-stream", false, "keepalive workload: each contender sends its keepalives over one LeaseKeepAlive stream of its own (as clientv3's KeepAlive does; reported as protocol grpc-stream) instead of calling KeepAliveOnce")
	cpuPids := fs.String("cpu-pids", "", "`name=pid,...` of etcd's processes: also report, per cell, their CPU time per operation and this process's")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	eps, err := loopbackEndpoints(*endpoints)
	if err == nil {
		err = o.Validate()
	}
	if err == nil && *cpuPids != "" {
		var pids map[string]int
		if pids, err = bench.ParsePids(*cpuPids); err == nil {
			o.CPU = bench.PidMeter(pids)
		}
	}
	if err == nil && *keepAliveStream && (len(o.Workloads) != 1 || o.Workloads[0] != bench.KeepAlive) {
		err = errors.New("--keepalive-stream: only with --workloads keepalive")
	}
	if err != nil {
		fmt.Fprintln(stderr, "etcd run:", err)
		return 2
	}
	eps, version, err := leaderFirst(ctx, eps, 30*time.Second)
	if err != nil {
		fmt.Fprintln(stderr, "etcd run:", err)
		return 1
	}
	cli, err := newClient(eps[:1])
	if err != nil {
		fmt.Fprintln(stderr, "etcd run:", err)
		return 1
	}
	defer cli.Close()

	text := io.Discard
	if !*asJSON {
		text = stdout
	}
	var progress func(bench.Progress)
	clear := func() {}
	if f, ok := stdout.(*os.File); ok && !*asJSON && bench.IsTerminal(f) {
		progress, clear = bench.ProgressLine(f)
	}
	protocol := "grpc"
	if *keepAliveStream {
		protocol = "grpc-stream"
	}
	fmt.Fprintf(text, "etcd %s, target %s (leader), protocol %s, %d B values, %d keys, %v warm-up + %v per cell\n\n",
		version, eps[0], protocol, o.ValueSize, o.Keys, o.Warmup, o.Duration)
	bench.WriteHeader(text)
	reaper := newReaper(cli)
	defer reaper.close()
	results, err := bench.Suite(ctx, driver{cli: cli, keepAliveStream: *keepAliveStream, reaper: reaper}, o, "etcd", protocol, progress, func(r bench.Result) {
		clear()
		bench.WriteRow(text, r)
	})
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if encErr := enc.Encode(bench.Report{System: "etcd", Version: version, Results: results}); encErr != nil {
			err = errors.Join(err, encErr)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "etcd run:", err)
		return 1
	}
	return 0
}

// readReports merges the results of the JSON reports in the files named
// by list (comma-separated), later cells replacing earlier identical ones.
func readReports(list string) (bench.Report, error) {
	var merged bench.Report
	for _, name := range strings.Split(list, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return merged, err
		}
		var r bench.Report
		if err := json.Unmarshal(b, &r); err != nil {
			return merged, fmt.Errorf("%s: %w", name, err)
		}
		merged.System = r.System
		if r.Version != "" {
			merged.Version = r.Version
		}
		merged.Results = append(merged.Results, r.Results...)
	}
	return merged, nil
}

func compareCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	etcdFiles := fs.String("etcd", "", "etcd's JSON reports, comma-separated")
	oursFiles := fs.String("ours", "", "consensus bench JSON reports, comma-separated")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	etcd, err := readReports(*etcdFiles)
	if err == nil {
		var ours bench.Report
		ours, err = readReports(*oursFiles)
		if err == nil {
			writeComparison(stdout, etcd, ours)
			return 0
		}
	}
	fmt.Fprintln(stderr, "etcd compare:", err)
	return 1
}

// row is one line of the side-by-side table: the same measure of a cell
// of each system.
type row struct {
	label    string
	workload bench.Workload
	conc     int
	protocol string // ours; etcd's is always its gRPC client
	// etcdProtocol picks etcd's cell by its protocol ("grpc" or, for
	// keepalives over a stream, "grpc-stream"); "" takes the first.
	etcdProtocol string
	latency      bool                              // compare a latency instead of ops/s: p50, or stat's
	stat         func(bench.Latency) time.Duration // which latency; nil: p50
	cpu          bool                              // compare CPU time per operation, all processes, instead of ops/s
	target       float64
	hasTarget    bool
}

// rows are the comparisons the benchmark targets are stated in.
var rows = []row{
	{label: "write ops/s, c=1", workload: bench.Write, conc: 1, protocol: "ws"},
	{label: "write ops/s, c=16", workload: bench.Write, conc: 16, protocol: "ws"},
	{label: "write ops/s, c=64", workload: bench.Write, conc: 64, protocol: "ws"},
	{label: "write ops/s, c=256", workload: bench.Write, conc: 256, protocol: "ws", target: 2, hasTarget: true},
	{label: "linearizable read ops/s, c=64", workload: bench.Read, conc: 64, protocol: "ws", target: 3, hasTarget: true},
	{label: "one-client write p50", workload: bench.Write, conc: 1, protocol: "ws", latency: true, target: 0.7, hasTarget: true},
	{label: "HTTP write ops/s, c=64", workload: bench.Write, conc: 64, protocol: "http", target: 1, hasTarget: true},
	{label: "HTTP linearizable read ops/s, c=64", workload: bench.Read, conc: 64, protocol: "http", target: 1.5, hasTarget: true},
	{label: "CPU per write, c=256, all processes", workload: bench.Write, conc: 256, protocol: "ws", cpu: true},
	{label: "CPU per read, c=64, all processes", workload: bench.Read, conc: 64, protocol: "ws", cpu: true},
	{label: "lock acquire+release/s, c=1", workload: bench.Lock, conc: 1, protocol: "ws"},
	{label: "lock acquire+release/s, c=64", workload: bench.Lock, conc: 64, protocol: "ws"},
	{label: "keepalives/s, c=64", workload: bench.KeepAlive, conc: 64, protocol: "ws", etcdProtocol: "grpc"},
	{label: "keepalives/s, c=64, etcd stream", workload: bench.KeepAlive, conc: 64, protocol: "ws", etcdProtocol: "grpc-stream"},
	{label: "lease expiry lateness p50, c=64", workload: bench.Expiry, conc: 64, protocol: "ws", latency: true},
	{label: "lease expiry lateness p99, c=64", workload: bench.Expiry, conc: 64, protocol: "ws", latency: true,
		stat: func(l bench.Latency) time.Duration { return l.P99 }},
	{label: "lease expiry lateness max, c=64", workload: bench.Expiry, conc: 64, protocol: "ws", latency: true,
		stat: func(l bench.Latency) time.Duration { return l.Max }},
	{label: "enqueue/s, c=1", workload: bench.Enqueue, conc: 1, protocol: "ws"},
	{label: "enqueue/s, c=16", workload: bench.Enqueue, conc: 16, protocol: "ws"},
	{label: "enqueue/s, c=64", workload: bench.Enqueue, conc: 64, protocol: "ws"},
	{label: "claim+complete/s, c=1", workload: bench.Claim, conc: 1, protocol: "ws"},
	{label: "claim+complete/s, c=16", workload: bench.Claim, conc: 16, protocol: "ws"},
	{label: "claim+complete/s, c=64", workload: bench.Claim, conc: 64, protocol: "ws"},
	{label: "claim p50, c=1", workload: bench.Claim, conc: 1, protocol: "ws", latency: true},
	{label: "claim p99, c=1", workload: bench.Claim, conc: 1, protocol: "ws", latency: true,
		stat: func(l bench.Latency) time.Duration { return l.P99 }},
	{label: "claim p50, c=64", workload: bench.Claim, conc: 64, protocol: "ws", latency: true},
	{label: "claim p99, c=64", workload: bench.Claim, conc: 64, protocol: "ws", latency: true,
		stat: func(l bench.Latency) time.Duration { return l.P99 }},
	{label: "takeover after TTL p50, c=16", workload: bench.Takeover, conc: 16, protocol: "ws", latency: true},
	{label: "takeover after TTL p99, c=16", workload: bench.Takeover, conc: 16, protocol: "ws", latency: true,
		stat: func(l bench.Latency) time.Duration { return l.P99 }},
	{label: "takeover after TTL max, c=16", workload: bench.Takeover, conc: 16, protocol: "ws", latency: true,
		stat: func(l bench.Latency) time.Duration { return l.Max }},
}

// value is the row's measure of res (found: whether the cell exists), as
// a number and as printed; ok is false, and the text "-", when res lacks it.
func (r row) value(res bench.Result, found bool) (v float64, text string, ok bool) {
	switch {
	case !found:
		return 0, "-", false
	case r.cpu:
		t, has := bench.TotalCPUPerOp(res)
		if !has {
			return 0, "-", false
		}
		return float64(t), bench.FormatDuration(t), true
	case r.latency:
		d := res.Latency.P50
		if r.stat != nil {
			d = r.stat(res.Latency)
		}
		return float64(d), bench.FormatDuration(d), true
	default:
		return res.OpsPerSec, fmt.Sprintf("%.0f", res.OpsPerSec), true
	}
}

func find(r bench.Report, w bench.Workload, conc int, protocol string) (bench.Result, bool) {
	i := slices.IndexFunc(r.Results, func(x bench.Result) bool {
		return x.Workload == w && x.Concurrency == conc && (protocol == "" || x.Protocol == protocol)
	})
	if i < 0 {
		return bench.Result{}, false
	}
	return r.Results[i], true
}

// writeComparison prints the side-by-side table: each row's measure for
// etcd (through its gRPC client) and for consensus (through the client
// the row names), and ours/etcd. For ops/s a ratio above 1 is better for
// us; for latency, below 1.
func writeComparison(w io.Writer, etcd, ours bench.Report) {
	const format = "%-36s %-5s %12s %12s %10s %8s  %s\n"
	etcdName := "etcd"
	if etcd.Version != "" {
		etcdName = "etcd " + etcd.Version
	}
	oursName := "consensus"
	if ours.Version != "" {
		oursName = "consensus " + ours.Version
	}
	for _, sys := range []struct {
		name string
		r    bench.Report
	}{{etcdName + " (clientv3, gRPC)", etcd}, {oursName, ours}} {
		fmt.Fprintf(w, "%s\n", sys.name)
		bench.WriteHeader(w)
		for _, res := range sys.r.Results {
			bench.WriteRow(w, res)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "side by side: %s through clientv3 (gRPC); %s through the client in column \"client\"\n", etcdName, oursName)
	fmt.Fprintf(w, "(ws = Go client over /v1/ws, http = JSON over HTTP/1.1); ours/etcd above 1 is faster for ops/s, below 1 for latency and lateness\n\n")
	fmt.Fprintf(w, format, "measure", "client", "etcd", "consensus", "ours/etcd", "target", "result")
	var notes []string
	for _, r := range rows {
		e, eok := find(etcd, r.workload, r.conc, r.etcdProtocol)
		o, ook := find(ours, r.workload, r.conc, r.protocol)
		if !eok && !ook {
			continue // a cell neither run measured (BENCH_SET)
		}
		ratio, verdict := "-", ""
		target := "-"
		if r.hasTarget {
			if r.latency {
				target = fmt.Sprintf("<=%.1fx", r.target)
			} else {
				target = fmt.Sprintf(">=%.1fx", r.target)
			}
		}
		a, ev, eok := r.value(e, eok)
		b, ov, ook := r.value(o, ook)
		if r.cpu && (!eok || !ook) {
			continue // shown only when both runs measured CPU (--cpu-pids)
		}
		if eok && ook && a > 0 {
			q := b / a
			ratio = fmt.Sprintf("%.2fx", q)
			if r.hasTarget {
				met := q >= r.target
				if r.latency {
					met = q <= r.target
				}
				verdict = "missed"
				if met {
					verdict = "met"
				}
			}
		}
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf(format, r.label, r.protocol, ev, ov, ratio, target, verdict), " \n"))
		for _, x := range []struct {
			name string
			res  bench.Result
			ok   bool
		}{{"etcd", e, eok}, {"consensus", o, ook}} {
			if x.ok && x.res.Errors > 0 && !r.cpu { // a cpu row's cell has its own row
				notes = append(notes, fmt.Sprintf("%s, %s: %d errors (first: %s)", r.label, x.name, x.res.Errors, x.res.FirstError))
			}
		}
	}
	for _, n := range notes {
		fmt.Fprintln(w, "note:", n)
	}
}

// memoryReport is the JSON document of etcd fill, shaped like the memory
// part of `consensus bench --fill-keys --json`.
type memoryReport struct {
	System  string             `json:"system"`
	Version string             `json:"version,omitempty"`
	Memory  []bench.NodeMemory `json:"memory"`
}

// parseDirs parses name=dir,...
func parseDirs(s string) (map[string]string, error) {
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		name, dir, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" || dir == "" {
			return nil, fmt.Errorf("--data: %q is not name=dir", part)
		}
		out[name] = dir
	}
	return out, nil
}

// fillCmd writes --keys distinct keys of --value-size bytes into a fresh
// etcd through the leader, 64 at a time (as consensus bench --fill-keys
// does), waits until every member has applied them, and reports each
// member's RSS before and after, its peak, and its data directory.
func fillCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoints := fs.String("endpoints", "", "etcd client addresses, host:port,...")
	pidList := fs.String("pids", "", "`name=pid,...` of etcd's processes, whose memory is reported")
	dataList := fs.String("data", "", "`name=dir,...`: their data directories, whose size is reported")
	keys := fs.Int("keys", 100_000, "distinct keys to write")
	valueSize := fs.Int("value-size", 100, "bytes per value")
	timeout := fs.Duration("timeout", 5*time.Second, "bound on one write")
	asJSON := fs.Bool("json", false, "print one JSON report on stdout instead of a table")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	eps, err := loopbackEndpoints(*endpoints)
	var pids map[string]int
	var dirs map[string]string
	if err == nil {
		pids, err = bench.ParsePids(*pidList)
	}
	if err == nil {
		dirs, err = parseDirs(*dataList)
	}
	if err == nil && (*keys < 1 || *keys > 10_000_000) {
		err = fmt.Errorf("--keys: %d is not between 1 and 10000000", *keys)
	}
	if err == nil && (*valueSize < 2 || *valueSize > 1<<20) {
		err = fmt.Errorf("--value-size: %d is not between 2 and 1048576", *valueSize)
	}
	if err != nil {
		fmt.Fprintln(stderr, "etcd fill:", err)
		return 2
	}
	report, err := fill(ctx, eps, pids, dirs, *keys, *valueSize, *timeout, stdout, *asJSON)
	if *asJSON && report != nil {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if encErr := enc.Encode(report); encErr != nil {
			err = errors.Join(err, encErr)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "etcd fill:", err)
		return 1
	}
	return 0
}

func fill(ctx context.Context, eps []string, pids map[string]int, dirs map[string]string, keys, valueSize int,
	timeout time.Duration, stdout io.Writer, asJSON bool) (*memoryReport, error) {
	text := io.Discard
	if !asJSON {
		text = stdout
	}
	names := make([]string, 0, len(pids))
	for name := range pids {
		names = append(names, name)
	}
	slices.Sort(names)
	eps, version, err := leaderFirst(ctx, eps, 30*time.Second)
	if err != nil {
		return nil, err
	}
	report := &memoryReport{System: "etcd", Version: version}
	for _, name := range names {
		rss, _, err := bench.ProcMemory(pids[name])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		report.Memory = append(report.Memory, bench.NodeMemory{Node: name, Keys: keys, ValueSize: valueSize, RSSBefore: rss})
	}
	cli, err := newClient(eps)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	fmt.Fprintf(text, "etcd %s: writing %d keys of %d B through %s (leader)...\n", version, keys, valueSize, eps[0])
	start := time.Now()
	if err := bench.Preload(ctx, driver{cli: cli}, keys, 64, bench.Value(valueSize), timeout); err != nil {
		return nil, err
	}
	fmt.Fprintf(text, "written in %v\n\n", time.Since(start).Round(time.Millisecond))
	if err := waitApplied(ctx, cli, eps, time.Minute); err != nil {
		return nil, err
	}
	bench.WriteMemoryHeader(text)
	for i := range report.Memory {
		m := &report.Memory[i]
		if m.RSSAfter, m.HWM, err = bench.ProcMemory(pids[m.Node]); err != nil {
			return nil, fmt.Errorf("%s: %w", m.Node, err)
		}
		if dir, ok := dirs[m.Node]; ok {
			m.DataBytes = bench.DirSize(dir)
		}
		bench.WriteMemoryRow(text, *m)
	}
	return report, nil
}

// waitApplied waits until every endpoint has applied the log up to the
// leader's (the first endpoint's) last index, as it is now.
func waitApplied(ctx context.Context, cli *clientv3.Client, eps []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := cli.Status(ctx, eps[0])
	if err != nil {
		return err
	}
	for _, ep := range eps {
		for {
			s, err := cli.Status(ctx, ep)
			if err == nil && s.RaftAppliedIndex >= st.RaftIndex {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s has not applied index %d within %v: %w", ep, st.RaftIndex, timeout, errors.Join(err, ctx.Err()))
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}
