package bench

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Options are the settings shared by every cell of a run.
type Options struct {
	// Workloads and Concurrency span the cells: each workload at each
	// concurrency, in the order given.
	Workloads   []Workload
	Concurrency []int
	// ValueSize is the size in bytes of written values.
	ValueSize int
	// Keys is the size of the key space; reads preload all of it.
	Keys int
	// ReadPercent is the share of reads in the mixed workload.
	ReadPercent int
	// Warmup runs before each cell's measured Duration and is not counted.
	Warmup, Duration time.Duration
	// Timeout bounds one operation.
	Timeout time.Duration
	// MaxOps bounds the measured operations of one cell.
	MaxOps int64
	// LeaseTTL is the time to live of the Expiry workload's leases: whole
	// seconds, as etcd grants them, and at least the 1 s floor both
	// systems put under a lease.
	LeaseTTL time.Duration
	// QueueTasks bounds the measured tasks an Enqueue cell adds, and is
	// the backlog of ready tasks a Claim cell starts from.
	QueueTasks int
	// CPU, if set, is read as each cell's measured time starts and ends;
	// the results then carry each process's CPU time (Result.CPU).
	CPU CPUMeter `json:"-"`
}

// DefaultOptions returns the defaults of the bench flags.
func DefaultOptions() Options {
	return Options{
		Workloads:   append([]Workload(nil), Workloads...),
		Concurrency: []int{1, 16, 64, 256},
		ValueSize:   100,
		Keys:        1000,
		ReadPercent: 90,
		Warmup:      500 * time.Millisecond,
		Duration:    5 * time.Second,
		Timeout:     5 * time.Second,
		MaxOps:      5_000_000,
		LeaseTTL:    time.Second,
		QueueTasks:  20_000,
	}
}

// MaxConcurrency bounds a cell's goroutines.
const MaxConcurrency = 4096

// Register defines the bench flags on fs, with o's values as defaults;
// parsing fs fills o.
func (o *Options) Register(fs *flag.FlagSet) {
	fs.Var(workloadsFlag{&o.Workloads}, "workloads", "comma-separated workloads: write, read (linearizable), read-local, mixed; leases and locks: lock (acquire+release), keepalive, expiry (lease expiry lateness); task queues: enqueue, claim (claim+complete), takeover (a dead worker's task claimed again: lateness after its time to live)")
	fs.Var(intsFlag{&o.Concurrency}, "concurrency", "comma-separated numbers of concurrent clients, one cell each")
	fs.IntVar(&o.ValueSize, "value-size", o.ValueSize, "bytes per written value (a JSON string)")
	fs.IntVar(&o.Keys, "keys", o.Keys, "size of the key space (reads preload it)")
	fs.IntVar(&o.ReadPercent, "read-percent", o.ReadPercent, "share of reads in the mixed workload, in percent")
	fs.DurationVar(&o.Warmup, "warmup", o.Warmup, "unmeasured run before each cell")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "measured time per cell")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "bound on one operation")
	fs.Int64Var(&o.MaxOps, "max-ops", o.MaxOps, "bound on the measured operations of one cell")
	fs.DurationVar(&o.LeaseTTL, "lease-ttl", o.LeaseTTL, "time to live of the expiry workload's leases and the takeover workload's claims (whole seconds)")
	fs.IntVar(&o.QueueTasks, "queue-tasks", o.QueueTasks, "most tasks an enqueue cell adds; the backlog a claim cell starts from")
}

// Validate reports what is wrong with o.
func (o Options) Validate() error {
	var errs []error
	if len(o.Workloads) == 0 {
		errs = append(errs, errors.New("--workloads: none"))
	}
	if len(o.Concurrency) == 0 {
		errs = append(errs, errors.New("--concurrency: none"))
	}
	for _, c := range o.Concurrency {
		if c < 1 || c > MaxConcurrency {
			errs = append(errs, fmt.Errorf("--concurrency: %d is not between 1 and %d", c, MaxConcurrency))
		}
	}
	if o.ValueSize < 2 || o.ValueSize > 1<<20 {
		errs = append(errs, fmt.Errorf("--value-size: %d is not between 2 and 1048576", o.ValueSize))
	}
	if o.Keys < 1 || o.Keys > 10_000_000 {
		errs = append(errs, fmt.Errorf("--keys: %d is not between 1 and 10000000", o.Keys))
	}
	if o.ReadPercent < 0 || o.ReadPercent > 100 {
		errs = append(errs, fmt.Errorf("--read-percent: %d is not between 0 and 100", o.ReadPercent))
	}
	if o.Warmup < 0 {
		errs = append(errs, errors.New("--warmup: negative"))
	}
	if o.Duration <= 0 || o.Duration > time.Hour {
		errs = append(errs, fmt.Errorf("--duration: %v is not in (0, 1h]", o.Duration))
	}
	if o.Timeout <= 0 {
		errs = append(errs, errors.New("--timeout: not positive"))
	}
	if o.LeaseTTL < time.Second || o.LeaseTTL > time.Hour || o.LeaseTTL%time.Second != 0 {
		errs = append(errs, fmt.Errorf("--lease-ttl: %v is not a whole number of seconds from 1s to 1h", o.LeaseTTL))
	}
	if o.QueueTasks < 1 || o.QueueTasks > 90_000 {
		// The state holds 100,000 tasks that are not done.
		errs = append(errs, fmt.Errorf("--queue-tasks: %d is not between 1 and 90000", o.QueueTasks))
	}
	if o.MaxOps < 1 {
		errs = append(errs, errors.New("--max-ops: not positive"))
	}
	return errors.Join(errs...)
}

type workloadsFlag struct{ p *[]Workload }

func (f workloadsFlag) String() string {
	if f.p == nil {
		return ""
	}
	parts := make([]string, len(*f.p))
	for i, w := range *f.p {
		parts[i] = string(w)
	}
	return strings.Join(parts, ",")
}

func (f workloadsFlag) Set(s string) error {
	ws, err := ParseWorkloads(s)
	if err != nil {
		return err
	}
	*f.p = ws
	return nil
}

type intsFlag struct{ p *[]int }

func (f intsFlag) String() string {
	if f.p == nil {
		return ""
	}
	parts := make([]string, len(*f.p))
	for i, n := range *f.p {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

func (f intsFlag) Set(s string) error {
	ns, err := ParseInts(s)
	if err != nil {
		return err
	}
	*f.p = ns
	return nil
}

// ParseInts parses a comma-separated list of integers.
func ParseInts(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n, err := strconv.Atoi(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", part)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}
