package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Scale is what one system's 3-node cluster costs with Keys keys of
// ValueSize bytes (`consensus bench --scale-keys`, `etcd-bench scale`).
// A zero duration or size was not measured.
type Scale struct {
	System    string `json:"system"`
	Version   string `json:"version,omitempty"`
	Keys      int    `json:"keys"`
	ValueSize int    `json:"valueSize"`
	// Load is the 1-minute load average when the measurement started and
	// when it ended (/proc/loadavg), as the machine is shared.
	LoadStart string `json:"loadStart,omitempty"`
	LoadEnd   string `json:"loadEnd,omitempty"`
	// Fill is the time to write the keys through the leader at
	// concurrency 64 until every member has applied them.
	Fill time.Duration `json:"fillNs"`
	// Memory is each member's RSS and data directory after the fill.
	Memory []NodeMemory `json:"memory"`
	// SnapshotBytes and Snapshot are the size of a backup of the whole
	// state streamed from the leader into a file, and the time from the
	// request until the file is synced.
	SnapshotBytes int64         `json:"snapshotBytes"`
	Snapshot      time.Duration `json:"snapshotNs"`
	// RestartNode is the time from starting a stopped follower's process
	// until it serves a linearizable read.
	RestartNode time.Duration `json:"restartNodeNs"`
	// RestartCluster is the time from starting every process of the
	// stopped cluster until each one serves a linearizable read.
	RestartCluster time.Duration `json:"restartClusterNs"`
	// CatchUp is the time from starting a new member's process (added as
	// a learner) until it has applied the leader's last index; CatchUpRSS
	// is its RSS then.
	CatchUp    time.Duration `json:"catchUpNs"`
	CatchUpRSS int64         `json:"catchUpRssBytes"`
}

// MaxRSS is the largest RSS after the fill among s's members (0: none).
func (s *Scale) MaxRSS() int64 {
	var m int64
	for _, n := range s.Memory {
		m = max(m, n.RSSAfter)
	}
	return m
}

// MaxData is the largest data directory among s's members (0: none).
func (s *Scale) MaxData() int64 {
	var m int64
	for _, n := range s.Memory {
		m = max(m, n.DataBytes)
	}
	return m
}

// LoadAvg is the 1-minute load average of this machine, as /proc/loadavg
// prints it; "?" where it cannot be read.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// WriteScale writes one table of the systems' costs at one key count, a
// column each, and with two systems a third: the second's figure over the
// first's. Systems that were not measured are nil.
func WriteScale(w io.Writer, systems ...*Scale) {
	var cols []*Scale
	for _, s := range systems {
		if s != nil {
			cols = append(cols, s)
		}
	}
	if len(cols) == 0 {
		return
	}
	fmt.Fprintf(w, "%d keys of %d B, %d members\n", cols[0].Keys, cols[0].ValueSize, len(cols[0].Memory))
	const label = "%-42s"
	fmt.Fprintf(w, label, "")
	for _, s := range cols {
		fmt.Fprintf(w, " %14s", strings.TrimSpace(s.System+" "+s.Version))
	}
	if len(cols) == 2 {
		fmt.Fprintf(w, " %10s", cols[1].System+"/"+cols[0].System)
	}
	fmt.Fprintln(w)
	row := func(name string, value func(*Scale) float64, format func(float64) string) {
		fmt.Fprintf(w, label, name)
		for _, s := range cols {
			fmt.Fprintf(w, " %14s", format(value(s)))
		}
		if len(cols) == 2 {
			a, b := value(cols[0]), value(cols[1])
			ratio := "-"
			if a > 0 && b > 0 {
				ratio = fmt.Sprintf("%.2fx", b/a)
			}
			fmt.Fprintf(w, " %10s", ratio)
		}
		fmt.Fprintln(w)
	}
	size := func(b float64) string {
		if b <= 0 {
			return "-"
		}
		return MiB(int64(b))
	}
	dur := func(d float64) string { return FormatDuration(time.Duration(d)) }
	row("write the keys, all members applied", func(s *Scale) float64 { return float64(s.Fill) }, dur)
	row("RSS per member, largest", func(s *Scale) float64 { return float64(s.MaxRSS()) }, size)
	row("data directory per member, largest", func(s *Scale) float64 { return float64(s.MaxData()) }, size)
	row("snapshot (backup from the leader) size", func(s *Scale) float64 { return float64(s.SnapshotBytes) }, size)
	row("snapshot (backup from the leader) time", func(s *Scale) float64 { return float64(s.Snapshot) }, dur)
	row("restart a stopped follower", func(s *Scale) float64 { return float64(s.RestartNode) }, dur)
	row("restart the whole stopped cluster", func(s *Scale) float64 { return float64(s.RestartCluster) }, dur)
	row("new member catches up", func(s *Scale) float64 { return float64(s.CatchUp) }, dur)
	row("new member's RSS then", func(s *Scale) float64 { return float64(s.CatchUpRSS) }, size)
	fmt.Fprintf(w, label, "1-minute load, start-end")
	for _, s := range cols {
		fmt.Fprintf(w, " %14s", s.LoadStart+"-"+s.LoadEnd)
	}
	fmt.Fprintln(w)
}
