package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/unrdf/consensus/bench"
)

// runFill writes cfg.fillKeys keys into the local cluster and reports each
// node's memory.
func runFill(ctx context.Context, lc *benchCluster, cfg benchConfig, text io.Writer) ([]bench.NodeMemory, error) {
	mem := make([]bench.NodeMemory, len(lc.nodes))
	for i, n := range lc.nodes {
		pm, err := bench.ProcMemory(lc.pid(i))
		if err != nil {
			return nil, err
		}
		mem[i] = bench.NodeMemory{Node: n.id, Keys: cfg.fillKeys, ValueSize: cfg.opts.ValueSize, RSSBefore: pm.RSS}
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
	bench.WriteMemoryHeader(text)
	for i := range lc.nodes {
		pm, err := bench.ProcMemory(lc.pid(i))
		if err != nil {
			return nil, err
		}
		mem[i].SetAfter(pm)
		mem[i].DataBytes = bench.DirSize(lc.nodes[i].data)
		bench.WriteMemoryRow(text, mem[i])
	}
	return mem, nil
}
