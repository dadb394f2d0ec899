package main

// etcd compare: our report beside etcd's, cell by cell.

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/unrdf/consensus/bench"
)

// readReports merges the results of the JSON reports in the files named
// by list (comma-separated), later cells replacing earlier identical ones;
// the watcher figures of each run that had watchers are in merged.Watch
// (the first) and watches (all, in order).
func readReports(list string) (merged bench.Report, watches []bench.WatchReport, err error) {
	for _, name := range strings.Split(list, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return merged, watches, err
		}
		var r bench.Report
		if err := json.Unmarshal(b, &r); err != nil {
			return merged, watches, fmt.Errorf("%s: %w", name, err)
		}
		merged.System = r.System
		if r.Version != "" {
			merged.Version = r.Version
		}
		merged.Results = append(merged.Results, r.Results...)
		if r.Watch != nil {
			watches = append(watches, *r.Watch)
			if merged.Watch == nil {
				merged.Watch = r.Watch
			}
		}
	}
	return merged, watches, nil
}

func compareCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	etcdFiles := fs.String("etcd", "", "etcd's JSON reports, comma-separated")
	oursFiles := fs.String("ours", "", "consensus bench JSON reports, comma-separated")
	table := fs.String("table", "targets", "which side-by-side rows: targets (the benchmark targets' cells) or curves (value sizes, cluster sizes, watchers, 1,024 clients)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *table != "targets" && *table != "curves" {
		fmt.Fprintf(stderr, "etcd compare: --table: %q is not targets or curves\n", *table)
		return 2
	}
	etcd, etcdWatches, err := readReports(*etcdFiles)
	if err == nil {
		var ours bench.Report
		var oursWatches []bench.WatchReport
		ours, oursWatches, err = readReports(*oursFiles)
		if err == nil {
			if *table == "curves" {
				writeCurves(stdout, etcd, ours, etcdWatches, oursWatches)
			} else {
				writeComparison(stdout, etcd, ours)
			}
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
