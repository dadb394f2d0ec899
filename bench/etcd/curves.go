package main

// etcd compare --table curves: how each cost grows with the work, etcd's
// and ours side by side (BENCH_SET=curves of scripts/bench-etcd.sh).

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/unrdf/consensus/bench"
)

// curveCell names one cell of a curves run: its workload and concurrency,
// the value size, the cluster size (0: any) and the watchers following
// the written prefix while it ran.
type curveCell struct {
	workload  bench.Workload
	conc      int
	valueSize int
	nodes     int
	watchers  int
}

func (c curveCell) find(r bench.Report) (bench.Result, bool) {
	i := slices.IndexFunc(r.Results, func(x bench.Result) bool {
		return x.Workload == c.workload && x.Concurrency == c.conc && x.ValueSize == c.valueSize &&
			(c.nodes == 0 || x.Nodes == c.nodes) && x.Watchers == c.watchers
	})
	if i < 0 {
		return bench.Result{}, false
	}
	return r.Results[i], true
}

// curveMeasure is what a curves row shows of its cell.
type curveMeasure int

const (
	opsPerSec curveMeasure = iota
	megabytesPerSec
	p50
	p99
	// ackLagP50 and ackLagP99 are of the watcher figures of the run whose
	// watchers match the cell's.
	ackLagP50
	ackLagP99
)

func (m curveMeasure) latency() bool { return m != opsPerSec && m != megabytesPerSec }

// curveRow is one line of the curves table.
type curveRow struct {
	label   string
	cell    curveCell
	measure curveMeasure
}

// value is the row's measure in r (watches: r's runs' watcher figures),
// as a number and as printed; ok is false when r lacks it.
func (row curveRow) value(r bench.Report, watches []bench.WatchReport) (v float64, text string, ok bool) {
	if row.measure == ackLagP50 || row.measure == ackLagP99 {
		i := slices.IndexFunc(watches, func(w bench.WatchReport) bool { return w.Watchers == row.cell.watchers })
		if i < 0 {
			return 0, "-", false
		}
		d := watches[i].AckLag.P50
		if row.measure == ackLagP99 {
			d = watches[i].AckLag.P99
		}
		return float64(d), bench.FormatDuration(d), true
	}
	res, found := row.cell.find(r)
	if !found {
		return 0, "-", false
	}
	var d time.Duration
	switch row.measure {
	case opsPerSec:
		return res.OpsPerSec, fmt.Sprintf("%.0f", res.OpsPerSec), true
	case megabytesPerSec:
		mb := res.OpsPerSec * float64(res.ValueSize) / 1e6
		return mb, fmt.Sprintf("%.1f", mb), true
	case p50:
		d = res.Latency.P50
	default:
		d = res.Latency.P99
	}
	return float64(d), bench.FormatDuration(d), true
}

// curveValueSizes, curveWatchers: the points of those curves.
var (
	curveValueSizes = []int{100, 10_000, 1_000_000}
	curveWatchers   = []int{1, 1000, 10000}
)

// sizeName prints a value size as the curves name it: 100 B, 10 KB, 1 MB.
func sizeName(n int) string {
	switch {
	case n >= 1e6 && n%1e6 == 0:
		return fmt.Sprintf("%d MB", n/1e6)
	case n >= 1e3 && n%1e3 == 0:
		return fmt.Sprintf("%d KB", n/1e3)
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// curveRows are the rows of the curves table, in the order printed.
func curveRows() []curveRow {
	var rows []curveRow
	for _, size := range curveValueSizes {
		for _, c := range []int{16, 64} {
			cell := curveCell{workload: bench.Write, conc: c, valueSize: size, nodes: 3}
			rows = append(rows,
				curveRow{fmt.Sprintf("write ops/s, %s, c=%d", sizeName(size), c), cell, opsPerSec},
				curveRow{fmt.Sprintf("write MB/s, %s, c=%d", sizeName(size), c), cell, megabytesPerSec})
		}
	}
	for _, nodes := range []int{3, 5} {
		for _, c := range []int{1, 64} {
			cell := curveCell{workload: bench.Write, conc: c, valueSize: 100, nodes: nodes}
			rows = append(rows,
				curveRow{fmt.Sprintf("write ops/s, %d nodes, c=%d", nodes, c), cell, opsPerSec},
				curveRow{fmt.Sprintf("write p50, %d nodes, c=%d", nodes, c), cell, p50})
		}
	}
	for _, n := range curveWatchers {
		cell := curveCell{workload: bench.Write, conc: 64, valueSize: 100, nodes: 3, watchers: n}
		rows = append(rows,
			curveRow{fmt.Sprintf("write ops/s, c=64, %d watchers", n), cell, opsPerSec},
			curveRow{fmt.Sprintf("delivery lag from ack p50, %d watchers", n), cell, ackLagP50},
			curveRow{fmt.Sprintf("delivery lag from ack p99, %d watchers", n), cell, ackLagP99})
	}
	for _, w := range []bench.Workload{bench.Write, bench.Read} {
		cell := curveCell{workload: w, conc: 1024, valueSize: 100, nodes: 3}
		name := "write"
		if w == bench.Read {
			name = "linearizable read"
		}
		rows = append(rows,
			curveRow{fmt.Sprintf("%s ops/s, c=1024", name), cell, opsPerSec},
			curveRow{fmt.Sprintf("%s p50, c=1024", name), cell, p50},
			curveRow{fmt.Sprintf("%s p99, c=1024", name), cell, p99})
	}
	return rows
}

// writeCurves prints the curves table: each row's measure for etcd
// (clientv3) and for us (the Go client: /v1/ws for writes and reads, SSE
// streams for watches), and ours/etcd. Rows neither run measured are
// left out; errors in a cell are noted under the table.
func writeCurves(w io.Writer, etcd, ours bench.Report, etcdWatches, oursWatches []bench.WatchReport) {
	const format = "%-42s %12s %12s %10s\n"
	fmt.Fprintf(w, "how cost grows with the work: etcd %s through clientv3 (gRPC), consensus %s through the Go client\n",
		etcd.Version, ours.Version)
	// Our watches are SSE streams unless the reports say /v1/ws.
	watchedOver := "SSE"
	if len(oursWatches) > 0 && !slices.ContainsFunc(oursWatches, func(r bench.WatchReport) bool { return r.Transport != "ws" }) {
		watchedOver = "/v1/ws"
	}
	fmt.Fprintf(w, "(writes and reads over /v1/ws, watches over %s); ours/etcd above 1 is faster for ops/s and MB/s, below 1 for latency\n\n", watchedOver)
	fmt.Fprintf(w, format, "measure", "etcd", "consensus", "ours/etcd")
	var notes []string
	for _, row := range curveRows() {
		a, at, aok := row.value(etcd, etcdWatches)
		b, bt, bok := row.value(ours, oursWatches)
		if !aok && !bok {
			continue
		}
		ratio := "-"
		// A lag from the ack can be negative (a watcher beat the
		// writer): no ratio then.
		if aok && bok && a > 0 && (!row.measure.latency() || b > 0) {
			ratio = fmt.Sprintf("%.2fx", b/a)
		}
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf(format, row.label, at, bt, ratio), " \n"))
		if row.measure != opsPerSec {
			continue // one note per cell: on its ops/s row
		}
		for _, x := range []struct {
			name string
			r    bench.Report
		}{{"etcd", etcd}, {"consensus", ours}} {
			if res, ok := row.cell.find(x.r); ok && res.Errors > 0 {
				notes = append(notes, fmt.Sprintf("%s, %s: %d errors (first: %s)", row.label, x.name, res.Errors, res.FirstError))
			}
		}
	}
	for _, x := range []struct {
		name    string
		watches []bench.WatchReport
	}{{"etcd", etcdWatches}, {"consensus", oursWatches}} {
		for _, wr := range x.watches {
			if wr.Ended > 0 || wr.Delivered < int64(wr.Probes)*int64(wr.Watchers) {
				notes = append(notes, fmt.Sprintf("%d watchers, %s: %d ended early, %d of %d probe events delivered",
					wr.Watchers, x.name, wr.Ended, wr.Delivered, int64(wr.Probes)*int64(wr.Watchers)))
			}
		}
	}
	for _, n := range notes {
		fmt.Fprintln(w, "note:", n)
	}
}
