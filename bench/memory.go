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
	// AnonAfter and FileAfter split RSSAfter (RssAnon, RssFile): the
	// process's own pages, and the pages of files it maps (its binary and
	// shared libraries, and any mapped data file, such as etcd's bbolt
	// database), which are shared with the page cache and can be dropped
	// and read back.
	AnonAfter int64 `json:"rssAnonAfterBytes"`
	FileAfter int64 `json:"rssFileAfterBytes"`
	// DataBytes is the size of the node's data directory (0: not known).
	DataBytes int64 `json:"dataBytes"`
}

// memoryFormat lays out one row of the memory table.
const memoryFormat = "%-5s %12s %12s %12s %12s %12s %12s %14s\n"

// WriteMemoryHeader writes the header of the memory table.
func WriteMemoryHeader(w io.Writer) {
	fmt.Fprintf(w, memoryFormat, "node", "rss before", "rss after", "anon after", "file after", "rss peak", "data dir", "rss/key")
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
	fmt.Fprintf(w, memoryFormat, m.Node, MiB(m.RSSBefore), MiB(m.RSSAfter), MiB(m.AnonAfter), MiB(m.FileAfter), MiB(m.HWM), data, perKey)
}

// MiB prints a size in bytes as mebibytes: 12.3 MiB.
func MiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// ProcMem is a process's memory, in bytes, from /proc/<pid>/status.
type ProcMem struct {
	RSS  int64 // VmRSS: resident now
	HWM  int64 // VmHWM: the peak of RSS
	Anon int64 // RssAnon: the resident pages that are the process's own
	File int64 // RssFile: the resident pages of mapped files
}

// ProcMemory reads the memory of process pid from /proc/<pid>/status.
// Linux only.
func ProcMemory(pid int) (ProcMem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcMem{}, err
	}
	return parseProcStatus(b)
}

// parseProcStatus reads a ProcMem from the text of a /proc/<pid>/status
// file, which must have all four lines.
func parseProcStatus(b []byte) (ProcMem, error) {
	var m ProcMem
	fields := map[string]*int64{"VmRSS": &m.RSS, "VmHWM": &m.HWM, "RssAnon": &m.Anon, "RssFile": &m.File}
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		dst := fields[name]
		if !ok || dst == nil {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return ProcMem{}, fmt.Errorf("/proc status: bad %s line %q", name, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return ProcMem{}, fmt.Errorf("/proc status: bad %s line %q", name, line)
		}
		*dst = kb << 10
		found++
	}
	if found != len(fields) {
		return ProcMem{}, errors.New("/proc status: no VmRSS, VmHWM, RssAnon and RssFile")
	}
	return m, nil
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

// SetAfter records m's memory after the fill from pm.
func (m *NodeMemory) SetAfter(pm ProcMem) {
	m.RSSAfter, m.HWM, m.AnonAfter, m.FileAfter = pm.RSS, pm.HWM, pm.Anon, pm.File
}
