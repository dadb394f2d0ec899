package main

// etcd fill: memory after a number of keys.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/unrdf/consensus/bench"
)

// memoryReport is the JSON document of etcd fill, shaped like the memory
// part of `consensus bench --fill-keys --json`.
type memoryReport struct {
	System  string             `json:"system"`
	Version string             `json:"version,omitempty"`
	Memory  []bench.NodeMemory `json:"memory"`
}

// parseDirs parses name=dir,...
func parseDirs(s string) (map[string]string, error) {
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		name, dir, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" || dir == "" {
			return nil, fmt.Errorf("--data: %q is not name=dir", part)
		}
		out[name] = dir
	}
	return out, nil
}

// fillCmd writes --keys distinct keys of --value-size bytes into a fresh
// etcd through the leader, 64 at a time (as consensus bench --fill-keys
// does), waits until every member has applied them, and reports each
// member's RSS before and after, its peak, and its data directory.
func fillCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoints := fs.String("endpoints", "", "etcd client addresses, host:port,...")
	pidList := fs.String("pids", "", "`name=pid,...` of etcd's processes, whose memory is reported")
	dataList := fs.String("data", "", "`name=dir,...`: their data directories, whose size is reported")
	keys := fs.Int("keys", 100_000, "distinct keys to write")
	valueSize := fs.Int("value-size", 100, "bytes per value")
	timeout := fs.Duration("timeout", 5*time.Second, "bound on one write")
	asJSON := fs.Bool("json", false, "print one JSON report on stdout instead of a table")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	eps, err := loopbackEndpoints(*endpoints)
	var pids map[string]int
	var dirs map[string]string
	if err == nil {
		pids, err = bench.ParsePids(*pidList)
	}
	if err == nil {
		dirs, err = parseDirs(*dataList)
	}
	if err == nil && (*keys < 1 || *keys > 10_000_000) {
		err = fmt.Errorf("--keys: %d is not between 1 and 10000000", *keys)
	}
	if err == nil && (*valueSize < 2 || *valueSize > 1<<20) {
		err = fmt.Errorf("--value-size: %d is not between 2 and 1048576", *valueSize)
	}
	if err != nil {
		fmt.Fprintln(stderr, "etcd fill:", err)
		return 2
	}
	report, err := fill(ctx, eps, pids, dirs, *keys, *valueSize, *timeout, stdout, *asJSON)
	if *asJSON && report != nil {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if encErr := enc.Encode(report); encErr != nil {
			err = errors.Join(err, encErr)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "etcd fill:", err)
		return 1
	}
	return 0
}

func fill(ctx context.Context, eps []string, pids map[string]int, dirs map[string]string, keys, valueSize int,
	timeout time.Duration, stdout io.Writer, asJSON bool) (*memoryReport, error) {
	text := io.Discard
	if !asJSON {
		text = stdout
	}
	names := make([]string, 0, len(pids))
	for name := range pids {
		names = append(names, name)
	}
	slices.Sort(names)
	eps, version, err := leaderFirst(ctx, eps, 30*time.Second)
	if err != nil {
		return nil, err
	}
	report := &memoryReport{System: "etcd", Version: version}
	for _, name := range names {
		pm, err := bench.ProcMemory(pids[name])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		report.Memory = append(report.Memory, bench.NodeMemory{Node: name, Keys: keys, ValueSize: valueSize, RSSBefore: pm.RSS})
	}
	cli, err := newClient(eps)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	fmt.Fprintf(text, "etcd %s: writing %d keys of %d B through %s (leader)...\n", version, keys, valueSize, eps[0])
	start := time.Now()
	if err := bench.Preload(ctx, driver{cli: cli}, keys, 64, bench.Value(valueSize), timeout); err != nil {
		return nil, err
	}
	fmt.Fprintf(text, "written in %v\n\n", time.Since(start).Round(time.Millisecond))
	if err := waitApplied(ctx, cli, eps, time.Minute); err != nil {
		return nil, err
	}
	bench.WriteMemoryHeader(text)
	for i := range report.Memory {
		m := &report.Memory[i]
		pm, err := bench.ProcMemory(pids[m.Node])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Node, err)
		}
		m.SetAfter(pm)
		if dir, ok := dirs[m.Node]; ok {
			m.DataBytes = bench.DirSize(dir)
		}
		bench.WriteMemoryRow(text, *m)
	}
	return report, nil
}

// waitApplied waits until every endpoint has applied the log up to the
// leader's (the first endpoint's) last index, as it is now.
func waitApplied(ctx context.Context, cli *clientv3.Client, eps []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := cli.Status(ctx, eps[0])
	if err != nil {
		return err
	}
	for _, ep := range eps {
		for {
			s, err := cli.Status(ctx, ep)
			if err == nil && s.RaftAppliedIndex >= st.RaftIndex {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s has not applied index %d within %v: %w", ep, st.RaftIndex, timeout, errors.Join(err, ctx.Err()))
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}
