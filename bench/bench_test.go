package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

func TestPercentile(t *testing.T) {
	ten := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	cases := []struct {
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{nil, 50, 0},
		{[]time.Duration{7}, 50, 7},
		{[]time.Duration{7}, 99, 7},
		{ten, 50, 5},
		{ten, 90, 9},
		{ten, 91, 10},
		{ten, 99, 10},
		{ten, 100, 10},
		{ten, 10, 1},
		{ten, 0.1, 1},
		{[]time.Duration{1, 2}, 50, 1},
		{[]time.Duration{1, 2}, 51, 2},
	}
	for _, c := range cases {
		if got := Percentile(c.samples, c.p); got != c.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", c.samples, c.p, got, c.want)
		}
	}
}

func TestSummariseSortsAndSummarises(t *testing.T) {
	var samples []time.Duration
	for i := 100; i >= 1; i-- {
		samples = append(samples, ms(float64(i)))
	}
	got := Summarise(samples)
	want := Latency{P50: ms(50), P90: ms(90), P99: ms(99), Max: ms(100)}
	if got != want {
		t.Fatalf("Summarise = %+v, want %+v", got, want)
	}
	if (Summarise(nil) != Latency{}) {
		t.Fatal("Summarise(nil) is not zero")
	}
}

func TestValueIsAJSONStringOfTheSize(t *testing.T) {
	for _, size := range []int{0, 2, 3, 100, 4096} {
		v := Value(size)
		if want := max(size, 2); len(v) != want {
			t.Errorf("Value(%d) has %d bytes, want %d", size, len(v), want)
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			t.Errorf("Value(%d) is not a JSON string: %v", size, err)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	cases := map[time.Duration]string{
		0:                       "-",
		850 * time.Microsecond:  "850µs",
		ms(1.234):               "1.23ms",
		ms(12.34):               "12.3ms",
		ms(123.4):               "123ms",
		1234 * time.Millisecond: "1.23s",
		-ms(12.34):              "-12.3ms",
	}
	for d, want := range cases {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	WriteHeader(&b)
	WriteRow(&b, Result{Protocol: "ws", Workload: Write, Concurrency: 64, Ops: 12345, OpsPerSec: 2469.04,
		Latency: Latency{P50: ms(1.5), P90: ms(12.26), P99: ms(123), Max: 2 * time.Second}})
	WriteRow(&b, Result{Protocol: "http", Workload: ReadLocal, Concurrency: 1, Errors: 3, FirstError: "boom"})
	want := "" +
		"workload   proto  conc       ops      ops/s       p50       p90       p99       max  errors\n" +
		"write      ws       64     12345     2469.0    1.50ms    12.3ms     123ms     2.00s       0\n" +
		"read-local http      1         0        0.0         -         -         -         -       3\n" +
		"    first error: boom\n"
	if b.String() != want {
		t.Fatalf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestOptionsFlags(t *testing.T) {
	o := DefaultOptions()
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.Register(fs)
	err := fs.Parse([]string{"--workloads", "read, mixed", "--concurrency", "2,8", "--value-size", "10",
		"--duration", "1s", "--warmup", "0", "--keys", "5", "--read-percent", "50", "--max-ops", "7", "--timeout", "2s", "--lease-ttl", "3s",
		"--queue-tasks", "500"})
	if err != nil {
		t.Fatal(err)
	}
	want := Options{Workloads: []Workload{Read, Mixed}, Concurrency: []int{2, 8}, ValueSize: 10, Keys: 5,
		ReadPercent: 50, Duration: time.Second, Timeout: 2 * time.Second, MaxOps: 7, LeaseTTL: 3 * time.Second,
		QueueTasks: 500}
	if got, _ := json.Marshal(o); string(got) != string(mustJSON(t, want)) {
		t.Fatalf("parsed %s, want %s", got, mustJSON(t, want))
	}

	bad := map[string][]string{
		"unknown workload":   {"--workloads", "write,scan"},
		"empty workloads":    {"--workloads", ","},
		"not a number":       {"--concurrency", "1,x"},
		"zero concurrency":   {"--concurrency", "0"},
		"huge concurrency":   {"--concurrency", "100000"},
		"tiny value":         {"--value-size", "1"},
		"no keys":            {"--keys", "0"},
		"read percent":       {"--read-percent", "101"},
		"zero duration":      {"--duration", "0s"},
		"negative warmup":    {"--warmup", "-1s"},
		"zero timeout":       {"--timeout", "0s"},
		"zero max ops":       {"--max-ops", "0"},
		"duration too long":  {"--duration", "2h"},
		"lease ttl too low":  {"--lease-ttl", "500ms"},
		"lease ttl not in s": {"--lease-ttl", "1500ms"},
		"lock workload typo": {"--workloads", "locks"},
		"no queue tasks":     {"--queue-tasks", "0"},
		"queue tasks >90000": {"--queue-tasks", "90001"},
	}
	for name, args := range bad {
		o := DefaultOptions()
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		o.Register(fs)
		if err := fs.Parse(args); err == nil && o.Validate() == nil {
			t.Errorf("%s: %v accepted", name, args)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// memDriver is an in-memory Driver: Get of a missing key fails, as it does
// for consensus.
type memDriver struct {
	mu          sync.Mutex
	keys        map[string][]byte
	puts, gets  int
	linearGets  int
	failWith    error
	putDuration time.Duration
}

func (d *memDriver) Put(ctx context.Context, key string, value []byte) error {
	if d.putDuration > 0 {
		select {
		case <-time.After(d.putDuration):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failWith != nil {
		return d.failWith
	}
	if d.keys == nil {
		d.keys = map[string][]byte{}
	}
	d.keys[key] = value
	d.puts++
	return nil
}

func (d *memDriver) Get(_ context.Context, key string, linearizable bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failWith != nil {
		return d.failWith
	}
	if _, ok := d.keys[key]; !ok {
		return errors.New("key not found: " + key)
	}
	d.gets++
	if linearizable {
		d.linearGets++
	}
	return nil
}

func quick() Options {
	o := DefaultOptions()
	o.Warmup, o.Duration, o.Keys = 0, 30*time.Millisecond, 50
	return o
}

func TestSuiteRunsEveryCellAndPreloadsReads(t *testing.T) {
	d := &memDriver{}
	o := quick()
	o.Concurrency = []int{1, 4}
	var emitted []Result
	results, err := Suite(context.Background(), d, o, "mem", "call", nil, func(r Result) { emitted = append(emitted, r) })
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 8 || len(emitted) != 8 {
		t.Fatalf("%d results, %d emitted, want 8", len(results), len(emitted))
	}
	i := 0
	for _, w := range Workloads {
		for _, c := range o.Concurrency {
			r := results[i]
			i++
			if r.Workload != w || r.Concurrency != c || r.System != "mem" || r.Protocol != "call" {
				t.Errorf("result %d is %s/%s %s c=%d, want %s c=%d", i, r.System, r.Protocol, r.Workload, r.Concurrency, w, c)
			}
			if r.Ops == 0 || r.Errors != 0 || r.OpsPerSec <= 0 || r.Latency.Max <= 0 || r.ValueSize != 100 {
				t.Errorf("%s c=%d: %+v", w, c, r)
			}
		}
	}
	if len(d.keys) != o.Keys {
		t.Errorf("%d keys written, want the whole key space of %d", len(d.keys), o.Keys)
	}
	if d.linearGets == 0 || d.linearGets == d.gets {
		t.Errorf("%d of %d reads linearizable: read-local should be the others", d.linearGets, d.gets)
	}
}

func TestRunCountsErrorsApart(t *testing.T) {
	d := &memDriver{failWith: errors.New("unavailable")}
	r := Run(context.Background(), d, quick(), Cell{Workload: Write, Concurrency: 3}, Value(10), nil)
	if r.Ops != 0 || r.Errors == 0 || r.FirstError != "unavailable" || (r.Latency != Latency{}) {
		t.Fatalf("all failing: %+v", r)
	}
}

func TestRunIsBoundedByMaxOpsAndContext(t *testing.T) {
	d := &memDriver{}
	o := quick()
	o.Duration, o.MaxOps = time.Minute, 25
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := Run(ctx, d, o, Cell{Workload: Write, Concurrency: 4}, Value(10), nil)
	if r.Ops+r.Errors > 25 || r.Ops == 0 {
		t.Fatalf("MaxOps 25: %d ops, %d errors", r.Ops, r.Errors)
	}
	if ctx.Err() != nil {
		t.Fatal("MaxOps did not end the cell")
	}

	// A cancelled context ends a cell whose operations hang.
	slow := &memDriver{putDuration: time.Hour}
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	o.Timeout = time.Hour
	start := time.Now()
	Run(ctx, slow, o, Cell{Workload: Write, Concurrency: 2}, Value(10), nil)
	if time.Since(start) > 10*time.Second {
		t.Fatal("cancel did not end the cell")
	}
}

func TestRunReportsProgress(t *testing.T) {
	o := quick()
	o.Duration = 600 * time.Millisecond
	var mu sync.Mutex
	var seen []Progress
	Run(context.Background(), &memDriver{}, o, Cell{Workload: Write, Concurrency: 1}, Value(10), func(p Progress) {
		mu.Lock()
		seen = append(seen, p)
		mu.Unlock()
	})
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 || seen[0].Total != o.Duration || seen[0].Cell.Workload != Write {
		t.Fatalf("progress: %+v", seen)
	}

	var b bytes.Buffer
	show, clear := ProgressLine(&b)
	show(Progress{Cell: Cell{Workload: Read, Concurrency: 64}, Elapsed: 1500 * time.Millisecond, Total: 5 * time.Second, Ops: 10})
	show(Progress{Cell: Cell{Workload: Read, Concurrency: 64}, Elapsed: 2 * time.Second, Total: 5 * time.Second, Ops: 9})
	clear()
	out := b.String()
	if !strings.HasPrefix(out, "\rread c=64  1.5s/5.0s  10 ops  0 errors\rread c=64  2.0s/5.0s  9 ops  0 errors ") || !strings.HasSuffix(out, "\r") {
		t.Fatalf("progress line: %q", out)
	}
}
