// Command savefloor measures the floor of a write's fsync on this
// machine: synced saves of one raft entry (with its hard state) to a
// fresh Pebble store, as the raft loop makes for one write, one at a
// time, timing each. With -procs 3 it runs three copies of itself at
// once, each on its own store, as the three nodes of a local cluster
// sync to one disk together.
//
//	go run ./internal/stages/savefloor [-n 2000] [-procs 1] [-size 200]
//
// It prints, per process, the median, 90th percentile and mean save.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/unrdf/consensus/storage"
)

// childEnv makes a copy measure alone and print its line.
const childEnv = "CONSENSUS_SAVEFLOOR_CHILD"

func main() {
	n := flag.Int("n", 2000, "saves per process")
	procs := flag.Int("procs", 1, "processes saving at once, each to its own store")
	size := flag.Int("size", 200, "bytes per entry")
	flag.Parse()
	if *n < 1 || *procs < 1 || *procs > 9 || *size < 0 || *size > 1<<20 {
		fmt.Fprintln(os.Stderr, "savefloor: -n >= 1, -procs in [1, 9], -size in [0, 1MiB]")
		os.Exit(2)
	}
	if os.Getenv(childEnv) == "" && *procs > 1 {
		if err := runCopies(*procs); err != nil {
			fmt.Fprintln(os.Stderr, "savefloor:", err)
			os.Exit(1)
		}
		return
	}
	d, err := measure(*n, *size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "savefloor:", err)
		os.Exit(1)
	}
	fmt.Println(summary(d, *size))
}

// runCopies runs procs copies of this command, with its arguments, at once.
func runCopies(procs int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmds := make([]*exec.Cmd, procs)
	for i := range cmds {
		c := exec.Command(self, os.Args[1:]...)
		c.Env = append(os.Environ(), childEnv+"="+strconv.Itoa(i+1))
		c.Stdout, c.Stderr = os.Stdout, os.Stderr
		if err := c.Start(); err != nil {
			return err
		}
		cmds[i] = c
	}
	var first error
	for _, c := range cmds {
		if err := c.Wait(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// measure saves n entries of size bytes one at a time to a new store in
// a temporary directory (removed at the end) and returns each save's time.
func measure(n, size int) ([]time.Duration, error) {
	dir, err := os.MkdirTemp("", "savefloor-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	st, err := storage.Open(dir, storage.Options{})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	data := make([]byte, size)
	d := make([]time.Duration, 0, n)
	for i := range uint64(n) {
		index := i + 1
		hs := &raftpb.HardState{Term: new(uint64(1)), Vote: new(uint64(1)), Commit: new(i)}
		ents := []*raftpb.Entry{{Index: new(index), Term: new(uint64(1)), Data: data}}
		start := time.Now()
		if err := st.Save(hs, ents, nil); err != nil {
			return nil, err
		}
		d = append(d, time.Since(start))
	}
	return d, nil
}

// summary is one line of the median, 90th percentile and mean of d
// (which it sorts).
func summary(d []time.Duration, size int) string {
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return fmt.Sprintf("%d synced saves of one %d B entry: p50 %v p90 %v mean %v",
		len(d), size, d[len(d)/2], d[len(d)*9/10], sum/time.Duration(len(d)))
}
