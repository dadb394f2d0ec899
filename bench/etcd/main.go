// Command etcd drives etcd with the workloads of `consensus bench`, through
// etcd's own Go client, and compares the results with ours. It is its own
// module so that etcd's client never enters the main module's go.mod.
//
//	etcd wait    --endpoints 127.0.0.1:2379,...            # until there is a leader
//	etcd run     --endpoints ... [bench flags] [--json]    # measure etcd
//	etcd compare --etcd etcd.json --ours ours.json,...     # the side-by-side table
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

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/unrdf/consensus/bench"
)

const usage = `Usage:
  etcd wait    --endpoints host:port,... [--timeout 30s]
  etcd run     --endpoints host:port,... [bench flags] [--json]
  etcd compare --etcd report.json,... --ours report.json,...
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
// connection (HTTP/2, multiplexed), to the leader.
type driver struct{ cli *clientv3.Client }

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

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := bench.DefaultOptions()
	o.Register(fs)
	endpoints := fs.String("endpoints", "", "etcd client addresses, host:port,... (the leader's is used)")
	asJSON := fs.Bool("json", false, "print one JSON report on stdout instead of a table")
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
	fmt.Fprintf(text, "etcd %s, target %s (leader), protocol grpc, %d B values, %d keys, %v warm-up + %v per cell\n\n",
		version, eps[0], o.ValueSize, o.Keys, o.Warmup, o.Duration)
	bench.WriteHeader(text)
	var progress func(bench.Progress)
	clear := func() {}
	if f, ok := stdout.(*os.File); ok && !*asJSON && bench.IsTerminal(f) {
		progress, clear = bench.ProgressLine(f)
	}
	results, err := bench.Suite(ctx, driver{cli}, o, "etcd", "grpc", progress, func(r bench.Result) {
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
	label     string
	workload  bench.Workload
	conc      int
	protocol  string // ours; etcd's is always its gRPC client
	latency   bool   // compare p50 latency instead of ops/s
	cpu       bool   // compare CPU time per operation, all processes, instead of ops/s
	target    float64
	hasTarget bool
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
		return float64(res.Latency.P50), bench.FormatDuration(res.Latency.P50), true
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
	for _, sys := range []struct {
		name string
		r    bench.Report
	}{{etcdName + " (clientv3, gRPC)", etcd}, {"consensus " + ours.Version, ours}} {
		fmt.Fprintf(w, "%s\n", sys.name)
		bench.WriteHeader(w)
		for _, res := range sys.r.Results {
			bench.WriteRow(w, res)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "side by side: %s through clientv3 (gRPC); consensus %s through the client in column \"client\"\n", etcdName, ours.Version)
	fmt.Fprintf(w, "(ws = Go client over /v1/ws, http = JSON over HTTP/1.1); ours/etcd above 1 is faster for ops/s, below 1 for latency\n\n")
	fmt.Fprintf(w, format, "measure", "client", "etcd", "consensus", "ours/etcd", "target", "result")
	var notes []string
	for _, r := range rows {
		e, eok := find(etcd, r.workload, r.conc, "")
		o, ook := find(ours, r.workload, r.conc, r.protocol)
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
