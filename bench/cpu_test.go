package bench

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and parentheses; utime 250, stime 75.
	line := "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 75 0 0 20 0 9 0 1000 0 0\n"
	got, err := parseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if want := 325 * clockTick; got != want {
		t.Fatalf("cpu %v, want %v", got, want)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 -5 3", "1 (x) S 1 2 3 4 5 6 7 8 9 x 3", "no parens at all"} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestProcCPUOfThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	if _, err := ProcCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := ProcCPU(-1); err == nil {
		t.Fatal("pid -1: no error")
	}
	// A meter of a process that is not there fails at once, not by
	// leaving every cell without CPU figures.
	if m, err := CheckedPidMeter(map[string]int{"n1": os.Getpid()}); err != nil || m == nil {
		t.Fatalf("this process: %v", err)
	}
	if _, err := CheckedPidMeter(map[string]int{"n1": os.Getpid(), "gone": 1 << 30}); err == nil {
		t.Fatal("a pid that names no process: no error")
	}
}

// TestRunReportsCPU gives Run a meter whose readings grow by a known
// amount between the start and the end of the measured time.
func TestRunReportsCPU(t *testing.T) {
	var mu sync.Mutex
	readings := 0
	o := quick()
	o.Warmup = 20 * time.Millisecond
	o.CPU = func() (map[string]time.Duration, error) {
		mu.Lock()
		defer mu.Unlock()
		readings++
		k := time.Duration(readings)
		return map[string]time.Duration{"n1": k * time.Second, "bench": k * 500 * time.Millisecond, "gone": 0}, nil
	}
	r := Run(context.Background(), &memDriver{}, o, Cell{Workload: Write, Concurrency: 2}, Value(10), nil)
	if readings != 2 {
		t.Fatalf("meter read %d times, want 2 (start and end of the measured time)", readings)
	}
	if len(r.CPU) != 3 || r.CPU[0].Name != "bench" || r.CPU[1].Name != "gone" || r.CPU[2].Name != "n1" {
		t.Fatalf("cpu %+v, want bench, gone, n1", r.CPU)
	}
	if r.CPU[0].Seconds != 0.5 || r.CPU[2].Seconds != 1 || r.CPU[1].Seconds != 0 {
		t.Fatalf("cpu %+v", r.CPU)
	}
	if r.Ops == 0 || r.CPU[2].PerOp != time.Second/time.Duration(r.Ops) {
		t.Fatalf("per op %v with %d ops", r.CPU[2].PerOp, r.Ops)
	}
	var b strings.Builder
	WriteRow(&b, r)
	if !strings.Contains(b.String(), "cpu per op: bench ") || !strings.Contains(b.String(), "(1.50 CPU-seconds in ") {
		t.Fatalf("row without the cpu line:\n%s", b.String())
	}
}

func TestRunWithoutCPUReadings(t *testing.T) {
	o := quick()
	o.CPU = func() (map[string]time.Duration, error) { return nil, errors.New("no /proc") }
	r := Run(context.Background(), &memDriver{}, o, Cell{Workload: Write, Concurrency: 1}, Value(10), nil)
	if r.CPU != nil {
		t.Fatalf("cpu %+v from a failing meter", r.CPU)
	}
}
