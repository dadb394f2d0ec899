package bench

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// NodeMemory is one node's memory after a fill: Keys distinct keys of
// ValueSize bytes written into a fresh cluster (`consensus bench
// --fill-keys`, `etcd-bench fill`).
type NodeMemory struct {
	Node      string `json:"node"`
	Keys      int    `json:"keys"`
	ValueSize int    `json:"valueSize"`
	// RSS before and after the fill, and the peak, from /proc/<pid>/status
	// (VmRSS, VmHWM), in bytes.
	RSSBefore int64 `json:"rssBeforeBytes"`
	RSSAfter  int64 `json:"rssAfterBytes"`
	HWM       int64 `json:"hwmBytes"`
	// DataBytes is the size of the node's data directory (0: not known).
	DataBytes int64 `json:"dataBytes"`
}

// memoryFormat lays out one row of the memory table.
const memoryFormat = "%-5s %12s %12s %12s %12s %14s\n"

// WriteMemoryHeader writes the header of the memory table.
func WriteMemoryHeader(w io.Writer) {
	fmt.Fprintf(w, memoryFormat, "node", "rss before", "rss after", "rss peak", "data dir", "rss/key")
}

// WriteMemoryRow writes m as a row of the memory table.
func WriteMemoryRow(w io.Writer, m NodeMemory) {
	perKey := "-"
	if m.Keys > 0 {
		perKey = fmt.Sprintf("%.0f B", float64(m.RSSAfter-m.RSSBefore)/float64(m.Keys))
	}
	data := "-"
	if m.DataBytes > 0 {
		data = MiB(m.DataBytes)
	}
	fmt.Fprintf(w, memoryFormat, m.Node, MiB(m.RSSBefore), MiB(m.RSSAfter), MiB(m.HWM), data, perKey)
}

// MiB prints a size in bytes as mebibytes: 12.3 MiB.
func MiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// ProcMemory reads VmRSS and VmHWM of pid, in bytes, from
// /proc/<pid>/status. Linux only.
func ProcMemory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseProcStatus(b)
}

// parseProcStatus returns VmRSS and VmHWM, in bytes, from the text of a
// /proc/<pid>/status file.
func parseProcStatus(b []byte) (rss, hwm int64, err error) {
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc status: bad %s line %q", name, line)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc status: bad %s line %q", name, line)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
		found++
	}
	if found != 2 {
		return 0, 0, errors.New("/proc status: no VmRSS and VmHWM")
	}
	return rss, hwm, nil
}

// DirSize is the total size of the regular files under dir.
func DirSize(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}
