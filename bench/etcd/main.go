// Command etcd drives etcd with the workloads of `consensus bench`, through
// etcd's own Go client, and compares the results with ours. It is its own
// module so that etcd's client never enters the main module's go.mod.
//
//	etcd wait    --endpoints 127.0.0.1:2379,...            # until there is a leader
//	etcd run     --endpoints ... [bench flags] [--json]    # measure etcd
//	etcd run     ... --watchers N                           # and N watches of bench/: delivery lag
//	etcd compare --etcd etcd.json --ours ours.json,...     # the side-by-side table
//	etcd compare --table curves --etcd ... --ours ...      # value sizes, nodes, watchers, c=1024
//	etcd fill    --endpoints ... --pids e1=PID,... --keys N  # memory after N keys
//	etcd scale   --etcd BIN --keys N [--json]              # what N keys cost (starts its own etcd)
//	etcd scale-compare --etcd etcd.json --ours ours.json  # the side-by-side table of scale
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
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/unrdf/consensus/bench"
)

const usage = `Usage:
  etcd wait    --endpoints host:port,... [--timeout 30s]
  etcd run     --endpoints host:port,... [bench flags] [--json]
  etcd compare [--table targets|curves] --etcd report.json,... --ours report.json,...
  etcd fill    --endpoints host:port,... --pids name=pid,... [--data name=dir,...] [--keys N] [--value-size B] [--json]
  etcd scale   --etcd BIN [--data DIR] [--port P] [--keys N] [--value-size B] [--json] [--keep-data]
  etcd scale-compare [--etcd report.json] [--ours report.json]
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
	case "scale":
		return scaleCmd(ctx, args[1:], stdout, stderr)
	case "scale-compare":
		return scaleCompareCmd(args[1:], stdout, stderr)
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

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := bench.DefaultOptions()
	o.Register(fs)
	endpoints := fs.String("endpoints", "", "etcd client addresses, host:port,... (the leader's is used)")
	asJSON := fs.Bool("json", false, "print one JSON report on stdout instead of a table")
	keepAliveStream := fs.Bool("keepalive-stream", false, "keepalive workload: each contender sends its keepalives over one LeaseKeepAlive stream of its own (as clientv3's KeepAlive does; reported as protocol grpc-stream) instead of calling KeepAliveOnce")
	cpuPids := fs.String("cpu-pids", "", "`name=pid,...` of etcd's processes: also report, per cell, their CPU time per operation and this process's")
	watchers := fs.Int("watchers", 0, "while the workloads run, follow bench/ with `N` clientv3 watches and report the delivery lag of probe writes")
	perStream := fs.Int("watches-per-stream", defaultWatchesPerStream, "with --watchers: watches per client (one gRPC connection and Watch stream each); the clients are spread over --endpoints")
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
			o.CPU, err = bench.CheckedPidMeter(pids)
		}
	}
	if err == nil && *keepAliveStream && (len(o.Workloads) != 1 || o.Workloads[0] != bench.KeepAlive) {
		err = errors.New("--keepalive-stream: only with --workloads keepalive")
	}
	if err == nil {
		err = checkWatchFlags(*watchers, *perStream)
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
	var fanout *watchFanout
	if *watchers > 0 {
		if fanout, err = startWatchFanout(ctx, eps, *watchers, *perStream); err != nil {
			fmt.Fprintln(stderr, "etcd run:", err)
			return 1
		}
	}
	results, err := bench.Suite(ctx, driver{cli: cli, keepAliveStream: *keepAliveStream, reaper: reaper}, o, "etcd", protocol, progress, func(r bench.Result) {
		clear()
		bench.WriteRow(text, r)
	})
	for i := range results {
		results[i].Nodes, results[i].Watchers = len(eps), *watchers
	}
	report := bench.Report{System: "etcd", Version: version, Results: results}
	if fanout != nil {
		wr, probeErr := fanout.stop()
		writeWatchReport(text, wr)
		report.Watch = &wr
		if err == nil && probeErr != nil {
			err = fmt.Errorf("watchers: %w", probeErr)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if encErr := enc.Encode(report); encErr != nil {
			err = errors.Join(err, encErr)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "etcd run:", err)
		return 1
	}
	return 0
}
