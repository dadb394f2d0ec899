package bench

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CPUMeter reads the CPU time (user and system) that each process of a
// measurement has used so far, by name: the measured system's processes
// and, usually, the load generator itself. Run reads it as a cell's
// measured time starts and as it ends.
type CPUMeter func() (map[string]time.Duration, error)

// ProcessCPU is the CPU time one process used during a cell's measured
// time, and that time divided by the cell's successful operations.
type ProcessCPU struct {
	Name    string        `json:"name"`
	Seconds float64       `json:"seconds"`
	PerOp   time.Duration `json:"perOpNs"`
}

// clockTick is the unit of the CPU times in /proc/<pid>/stat: USER_HZ,
// 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// ProcCPU returns the CPU time (user plus system, all threads) process pid
// has used, from /proc/<pid>/stat, in steps of 10 ms. Linux only.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStat(b)
}

// parseProcStat reads utime and stime (fields 14 and 15) of a
// /proc/<pid>/stat line. The command name (field 2) is in parentheses and
// may itself hold spaces and parentheses, so fields are counted from the
// last ')'.
func parseProcStat(b []byte) (time.Duration, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, fmt.Errorf("bench: /proc stat: no command name")
	}
	fields := bytes.Fields(b[end+1:])
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("bench: /proc stat: %d fields after the command name, want at least 13", len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bench: /proc stat: bad CPU time %q", f)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// cpuDelta is after minus before per process, sorted by name, with the
// time per operation; nil if either reading is missing.
func cpuDelta(before, after map[string]time.Duration, ops int64) []ProcessCPU {
	if before == nil || after == nil {
		return nil
	}
	var out []ProcessCPU
	for name, a := range after {
		b, ok := before[name]
		if !ok {
			continue
		}
		used := max(a-b, 0)
		p := ProcessCPU{Name: name, Seconds: used.Seconds()}
		if ops > 0 {
			p.PerOp = used / time.Duration(ops)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y ProcessCPU) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// PidMeter returns a meter of the processes in pids (by name) and of this
// process, named "bench".
func PidMeter(pids map[string]int) CPUMeter {
	return func() (map[string]time.Duration, error) {
		out := make(map[string]time.Duration, len(pids)+1)
		self, err := ProcCPU(os.Getpid())
		if err != nil {
			return nil, err
		}
		out["bench"] = self
		for name, pid := range pids {
			t, err := ProcCPU(pid)
			if err != nil {
				return nil, fmt.Errorf("bench: cpu of %s (pid %d): %w", name, pid, err)
			}
			out[name] = t
		}
		return out, nil
	}
}

// CheckedPidMeter is PidMeter after one reading of every process, so that
// a pid that names no process (a node that never started, say) is an
// error now rather than cells without CPU figures later.
func CheckedPidMeter(pids map[string]int) (CPUMeter, error) {
	m := PidMeter(pids)
	if _, err := m(); err != nil {
		return nil, err
	}
	return m, nil
}

// ParsePids parses "name=pid,name=pid" (the --cpu-pids flag).
func ParsePids(s string) (map[string]int, error) {
	out := make(map[string]int)
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, num, ok := strings.Cut(part, "=")
		pid, err := strconv.Atoi(num)
		switch {
		case !ok || name == "" || err != nil || pid <= 0:
			return nil, fmt.Errorf("%q is not name=pid", part)
		case name == "bench":
			return nil, fmt.Errorf("%q: the name bench is this process's", part)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%q: name given twice", name)
		}
		out[name] = pid
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no name=pid given")
	}
	return out, nil
}

// TotalCPUPerOp is the sum of every process's CPU time per operation, and
// whether r has CPU figures at all.
func TotalCPUPerOp(r Result) (time.Duration, bool) {
	var total time.Duration
	for _, p := range r.CPU {
		total += p.PerOp
	}
	return total, len(r.CPU) > 0
}
