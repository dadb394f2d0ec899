package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// tableFormat lays out one row of the results table.
const tableFormat = "%-10s %-5s %5s %9s %10s %9s %9s %9s %9s %7s\n"

// WriteHeader writes the header of the results table.
func WriteHeader(w io.Writer) {
	fmt.Fprintf(w, tableFormat, "workload", "proto", "conc", "ops", "ops/s", "p50", "p90", "p99", "max", "errors")
}

// WriteRow writes one result as a row of the results table, and its first
// error, if any, on the next line.
func WriteRow(w io.Writer, r Result) {
	fmt.Fprintf(w, tableFormat, r.Workload, r.Protocol, fmt.Sprint(r.Concurrency), fmt.Sprint(r.Ops),
		fmt.Sprintf("%.1f", r.OpsPerSec), FormatDuration(r.Latency.P50), FormatDuration(r.Latency.P90),
		FormatDuration(r.Latency.P99), FormatDuration(r.Latency.Max), fmt.Sprint(r.Errors))
	if r.FirstError != "" {
		fmt.Fprintf(w, "    first error: %s\n", r.FirstError)
	}
	if len(r.CPU) > 0 {
		var parts []string
		var seconds float64
		for _, p := range r.CPU {
			parts = append(parts, p.Name+" "+FormatDuration(p.PerOp))
			seconds += p.Seconds
		}
		total, _ := TotalCPUPerOp(r)
		fmt.Fprintf(w, "    cpu per op: %s; total %s (%.2f CPU-seconds in %.2f s)\n",
			strings.Join(parts, ", "), FormatDuration(total), seconds, r.Seconds)
	}
}

// FormatDuration prints a latency with three significant digits in the
// unit that fits: 850µs, 1.23ms, 12.3ms, 123ms, 1.23s; "-" for none (0).
// A negative one (a lease seen expired before its deadline) has a minus
// sign: -1.23ms.
func FormatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 0:
		return "-" + FormatDuration(-d)
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

// IsTerminal reports whether f is a character device (a terminal), where
// a progress line that rewrites itself makes sense.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// ProgressLine returns a function that rewrites one status line on w (a
// terminal) and one that erases it.
func ProgressLine(w io.Writer) (show func(Progress), clear func()) {
	width := 0
	show = func(p Progress) {
		s := fmt.Sprintf("%s c=%d  %.1fs/%.1fs  %d ops  %d errors", p.Cell.Workload, p.Cell.Concurrency,
			p.Elapsed.Seconds(), p.Total.Seconds(), p.Ops, p.Errors)
		pad := max(width-len(s), 0)
		width = len(s)
		fmt.Fprintf(w, "\r%s%s", s, strings.Repeat(" ", pad))
	}
	clear = func() {
		if width > 0 {
			fmt.Fprintf(w, "\r%s\r", strings.Repeat(" ", width))
			width = 0
		}
	}
	return show, clear
}
