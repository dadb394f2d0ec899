package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/unrdf/consensus/bench"
)

// nodeMemory is one node's memory after a fill.
type nodeMemory struct {
	Node      string `json:"node"`
	Keys      int    `json:"keys"`
	ValueSize int    `json:"valueSize"`
	// RSS before and after the fill, and the peak, from /proc/<pid>/status
	// (VmRSS, VmHWM), in bytes.
	RSSBefore int64 `json:"rssBeforeBytes"`
	RSSAfter  int64 `json:"rssAfterBytes"`
	HWM       int64 `json:"hwmBytes"`
	// DataBytes is the size of the node's data directory.
	DataBytes int64 `json:"dataBytes"`
}

func runFill(ctx context.Context, lc *benchCluster, cfg benchConfig, text io.Writer) ([]nodeMemory, error) {
	mem := make([]nodeMemory, len(lc.nodes))
	for i, n := range lc.nodes {
		rss, _, err := procMemory(lc.pid(i))
		if err != nil {
			return nil, err
		}
		mem[i] = nodeMemory{Node: n.id, Keys: cfg.fillKeys, ValueSize: cfg.opts.ValueSize, RSSBefore: rss}
	}
	endpoints, _, err := leaderFirst(ctx, benchTarget{}, lc.addrs())
	if err != nil {
		return nil, err
	}
	driver, closeDriver, err := newDriver(cfg.protocol, benchTarget{}, endpoints, 64)
	if err != nil {
		return nil, err
	}
	defer closeDriver()
	fmt.Fprintf(text, "writing %d keys of %d B through %s...\n", cfg.fillKeys, cfg.opts.ValueSize, cfg.protocol)
	start := time.Now()
	if err := bench.Preload(ctx, driver, cfg.fillKeys, 64, bench.Value(cfg.opts.ValueSize), cfg.opts.Timeout); err != nil {
		return nil, err
	}
	fmt.Fprintf(text, "written in %v\n\n", time.Since(start).Round(time.Millisecond))
	for i := range lc.nodes {
		if err := lc.waitCaughtUp(ctx, i, 60*time.Second); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(text, "%-5s %12s %12s %12s %12s %14s\n", "node", "rss before", "rss after", "rss peak", "data dir", "rss/key")
	for i := range lc.nodes {
		rss, hwm, err := procMemory(lc.pid(i))
		if err != nil {
			return nil, err
		}
		mem[i].RSSAfter, mem[i].HWM = rss, hwm
		mem[i].DataBytes = dirSize(lc.nodes[i].data)
		perKey := float64(mem[i].RSSAfter-mem[i].RSSBefore) / float64(cfg.fillKeys)
		fmt.Fprintf(text, "%-5s %12s %12s %12s %12s %12.0f B\n", mem[i].Node, mib(mem[i].RSSBefore), mib(rss), mib(hwm),
			mib(mem[i].DataBytes), perKey)
	}
	return mem, nil
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// procMemory reads VmRSS and VmHWM of pid from /proc/<pid>/status.
func procMemory(pid int) (rss, hwm int64, err error) {
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

func dirSize(dir string) int64 {
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
