package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Driver is one system's client as the load loop uses it. Its methods are
// called from many goroutines at once and must honour ctx.
type Driver interface {
	// Put writes value under key and returns once the write is
	// acknowledged.
	Put(ctx context.Context, key string, value []byte) error
	// Get reads key: linearizable when asked, else the cheapest read the
	// system offers (local or serializable). A missing key is an error.
	Get(ctx context.Context, key string, linearizable bool) error
}

// Workload names what a cell's operations are.
type Workload string

// The workloads. Reads and mixed cells run on a preloaded key space.
const (
	// Write puts keys of the key space, chosen at random.
	Write Workload = "write"
	// Read gets keys with linearizable reads.
	Read Workload = "read"
	// ReadLocal gets keys with local (possibly stale) reads.
	ReadLocal Workload = "read-local"
	// Mixed is Options.ReadPercent linearizable reads, the rest writes.
	Mixed Workload = "mixed"
)

// Workloads lists every workload in the order cells run.
var Workloads = []Workload{Write, Read, ReadLocal, Mixed}

func (w Workload) valid() bool {
	return slices.Contains(Workloads, w) || slices.Contains(CoordWorkloads, w) || slices.Contains(QueueWorkloads, w)
}

// needsData reports whether the cell reads keys that must exist.
func (w Workload) needsData() bool { return w != Write && !w.isCoord() && !w.isQueue() }

// Result is the measurement of one cell. Latencies are of successful
// operations only.
type Result struct {
	// System names what was measured ("consensus", "etcd").
	System string `json:"system"`
	// Protocol names the client ("ws", "http", "grpc").
	Protocol    string   `json:"protocol"`
	Workload    Workload `json:"workload"`
	Concurrency int      `json:"concurrency"`
	ValueSize   int      `json:"valueSize"`
	// Nodes is the size of the measured cluster and Watchers the number
	// of watchers following the workloads' prefix while the cell ran;
	// the runner sets them (0: not recorded, and no watchers).
	Nodes    int `json:"nodes,omitempty"`
	Watchers int `json:"watchers,omitempty"`
	// Seconds is the measured time, from the end of the warm-up to the
	// last operation's answer.
	Seconds float64 `json:"seconds"`
	// Ops counts successful operations; Errors failed ones.
	Ops    int64 `json:"ops"`
	Errors int64 `json:"errors"`
	// OpsPerSec is Ops / Seconds.
	OpsPerSec float64 `json:"opsPerSec"`
	Latency   Latency `json:"latency"`
	// FirstError is the first failure's message, if any.
	FirstError string `json:"firstError,omitempty"`
	// CPU is the CPU time each process used in the measured time, when
	// Options.CPU is set.
	CPU []ProcessCPU `json:"cpu,omitempty"`
}

// Latency summarises latencies. JSON carries nanoseconds.
type Latency struct {
	P50 time.Duration `json:"p50Ns"`
	P90 time.Duration `json:"p90Ns"`
	P99 time.Duration `json:"p99Ns"`
	Max time.Duration `json:"maxNs"`
}

// Report is the JSON document `consensus bench --json` and the etcd
// driver print.
type Report struct {
	System string `json:"system"`
	// Version is the measured system's version, when known.
	Version string   `json:"version,omitempty"`
	Results []Result `json:"results"`
	// Watch is the watcher figures of a run with watchers.
	Watch *WatchReport `json:"watch,omitempty"`
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest sample at or above p percent of them.
// It returns 0 for no samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(p/100*float64(n) + 0.999999999)
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// Summarise sorts samples in place and returns their percentiles.
func Summarise(samples []time.Duration) Latency {
	slices.Sort(samples)
	if len(samples) == 0 {
		return Latency{}
	}
	return Latency{
		P50: Percentile(samples, 50),
		P90: Percentile(samples, 90),
		P99: Percentile(samples, 99),
		Max: samples[len(samples)-1],
	}
}

// Key returns the name of key i of the key space.
func Key(i int) string { return fmt.Sprintf("bench/%06d", i) }

// Value returns a JSON string of exactly size bytes (at least 2), so it is
// a valid value for every system.
func Value(size int) []byte {
	size = max(size, 2)
	v := make([]byte, size)
	v[0], v[size-1] = '"', '"'
	for i := 1; i < size-1; i++ {
		v[i] = 'a' + byte(i%26)
	}
	return v
}

// Cell is one measurement: a workload at a concurrency, with the rest of
// the settings from Options.
type Cell struct {
	Workload    Workload
	Concurrency int
}

// Progress is a running cell's state, reported a few times a second.
type Progress struct {
	Cell Cell
	// Elapsed counts from the start of the cell, warm-up included.
	Elapsed, Total time.Duration
	// Ops and Errors count measured operations so far.
	Ops, Errors int64
}

// Run measures one cell. ctx ends it early. value is what writes store.
// A coordination cell (CoordWorkloads) needs d to be a CoordDriver; its
// contenders or its watch are set up before the cell's time starts, and a
// failure to set them up is the result's one error. A queue cell
// (QueueWorkloads) needs a QueueDriver, and sets up its workers (and a
// Claim cell its backlog) the same way.
func Run(ctx context.Context, d Driver, o Options, c Cell, value []byte, progress func(Progress)) Result {
	// An operation may take o.Timeout; an Expiry operation pauses for up
	// to its lease's time to live and then waits it out on top of that.
	opTimeout := o.Timeout
	var coord *coordCell
	if c.Workload.isCoord() {
		var err error
		if coord, err = newCoordCell(ctx, d, o, c); err != nil {
			return Result{Workload: c.Workload, Concurrency: c.Concurrency, ValueSize: len(value), Errors: 1, FirstError: err.Error()}
		}
		defer coord.close(o.Timeout)
		if c.Workload == Expiry {
			opTimeout += 2 * o.LeaseTTL
		}
	}
	var queue *queueCell
	maxOps := o.MaxOps
	if c.Workload.isQueue() {
		var err error
		if queue, err = newQueueCell(ctx, d, o, c); err != nil {
			return Result{Workload: c.Workload, Concurrency: c.Concurrency, ValueSize: len(value), Errors: 1, FirstError: err.Error()}
		}
		defer queue.close(o.Timeout)
		switch c.Workload {
		case Takeover:
			// A pause of up to the time to live, the claim's time to
			// live, and the takeover's lateness.
			opTimeout += 3 * o.LeaseTTL
		case Enqueue:
			maxOps = min(maxOps, int64(o.QueueTasks))
		}
	}
	start := time.Now()
	measureFrom := start.Add(o.Warmup)
	end := measureFrom.Add(o.Duration)
	// A hard stop for operations still in flight at the end.
	ctx, cancel := context.WithDeadline(ctx, end.Add(opTimeout))
	defer cancel()

	var (
		attempts, ops, errs atomic.Int64
		errOnce             sync.Once
		firstErr            string
		wg                  sync.WaitGroup
	)
	// The CPU meter is read when the measured time starts and once every
	// operation has answered, the span Seconds covers.
	var cpuBefore map[string]time.Duration
	cpuRead := make(chan struct{})
	if o.CPU == nil {
		close(cpuRead)
	} else {
		go func() {
			defer close(cpuRead)
			t := time.NewTimer(time.Until(measureFrom))
			defer t.Stop()
			select {
			case <-t.C:
				cpuBefore, _ = o.CPU() // nil on error: no CPU figures
			case <-ctx.Done():
			}
		}()
	}
	samples := make([][]time.Duration, c.Concurrency)
	for w := range c.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(len(c.Workload))))
			var mine []time.Duration
			for seq := 0; ; seq++ {
				t0 := time.Now()
				if !t0.Before(end) || ctx.Err() != nil {
					break
				}
				measured := !t0.Before(measureFrom)
				if measured && attempts.Add(1) > maxOps {
					break
				}
				key := Key(rng.IntN(o.Keys))
				opCtx, opCancel := context.WithTimeout(ctx, opTimeout)
				var (
					err      error
					sample   time.Duration
					isSample bool
				)
				switch {
				case coord != nil:
					sample, isSample, err = coord.op(opCtx, c.Workload, w, seq, rng, value, o.LeaseTTL)
				case queue != nil:
					sample, isSample, err = queue.op(opCtx, c.Workload, w, rng, value, o.LeaseTTL)
				case c.Workload == Write,
					c.Workload == Mixed && rng.IntN(100) >= o.ReadPercent:
					err = d.Put(opCtx, key, value)
				default:
					err = d.Get(opCtx, key, c.Workload != ReadLocal)
				}
				opCancel()
				lat := time.Since(t0)
				if isSample {
					lat = sample
				}
				if err != nil {
					if measured && ctx.Err() == nil {
						errs.Add(1)
						errOnce.Do(func() { firstErr = err.Error() })
					}
					if c.Workload == Claim && errors.Is(err, ErrNoTask) {
						break // the backlog ran out
					}
					// Do not spin on a system that fails fast.
					sleepCtx(ctx, time.Millisecond)
					continue
				}
				if measured {
					ops.Add(1)
					mine = append(mine, lat)
				}
			}
			samples[w] = mine
		}()
	}

	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if progress == nil {
			return
		}
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				progress(Progress{Cell: c, Elapsed: time.Since(start), Total: o.Warmup + o.Duration,
					Ops: ops.Load(), Errors: errs.Load()})
			}
		}
	}()
	wg.Wait()
	close(stopProgress)
	<-progressDone
	var cpuAfter map[string]time.Duration
	if o.CPU != nil {
		cpuAfter, _ = o.CPU()
	}
	<-cpuRead

	elapsed := time.Since(measureFrom)
	var all []time.Duration
	for _, s := range samples {
		all = append(all, s...)
	}
	r := Result{
		Workload:    c.Workload,
		Concurrency: c.Concurrency,
		ValueSize:   len(value),
		Seconds:     elapsed.Seconds(),
		Ops:         ops.Load(),
		Errors:      errs.Load(),
		Latency:     Summarise(all),
		FirstError:  firstErr,
	}
	if elapsed > 0 {
		r.OpsPerSec = float64(r.Ops) / elapsed.Seconds()
	}
	r.CPU = cpuDelta(cpuBefore, cpuAfter, r.Ops)
	return r
}

// Preload writes every key of the key space once, with concurrency
// writers, so that reads find them. It stops at the first error.
func Preload(ctx context.Context, d Driver, keys, concurrency int, value []byte, timeout time.Duration) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, concurrency)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(concurrency, keys) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= keys || ctx.Err() != nil {
					return
				}
				opCtx, opCancel := context.WithTimeout(ctx, timeout)
				err := d.Put(opCtx, Key(i), value)
				opCancel()
				if err != nil {
					errc <- fmt.Errorf("preload %s: %w", Key(i), err)
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	return errors.Join(<-errc, ctx.Err())
}

// Suite runs every cell of o (workloads by concurrency), preloading the
// key space before the first cell that reads, and hands each result to
// emit as soon as it is measured. It returns the results in order.
func Suite(ctx context.Context, d Driver, o Options, system, protocol string, progress func(Progress), emit func(Result)) ([]Result, error) {
	value := Value(o.ValueSize)
	var results []Result
	loaded := false
	for _, w := range o.Workloads {
		if w.needsData() && !loaded {
			if err := Preload(ctx, d, o.Keys, 64, value, o.Timeout); err != nil {
				return results, err
			}
			loaded = true
		}
		for _, conc := range o.Concurrency {
			if err := ctx.Err(); err != nil {
				return results, err
			}
			r := Run(ctx, d, o, Cell{Workload: w, Concurrency: conc}, value, progress)
			r.System, r.Protocol = system, protocol
			results = append(results, r)
			if emit != nil {
				emit(r)
			}
		}
	}
	return results, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ParseWorkloads parses a comma-separated list of workload names.
func ParseWorkloads(s string) ([]Workload, error) {
	var out []Workload
	for _, part := range strings.Split(s, ",") {
		w := Workload(strings.TrimSpace(part))
		if w == "" {
			continue
		}
		if !w.valid() {
			return nil, fmt.Errorf("unknown workload %q (want write, read, read-local, mixed, lock, keepalive, expiry, enqueue, claim or takeover)", w)
		}
		out = append(out, w)
	}
	if len(out) == 0 {
		return nil, errors.New("no workload")
	}
	return out, nil
}
