// Command watch shows watches with the Go client: follow every change
// under a prefix while another goroutine writes, stop part way, and
// resume from the last revision seen without missing or repeating a
// change.
//
//	go run ./cmd/consensus up       # in one terminal
//	go run ./examples/watch         # in another
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/kv"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:9080,127.0.0.1:9081,127.0.0.1:9082",
		"HTTP addresses of cluster members, host:port,... (the cluster `consensus up` starts)")
	flag.Parse()
	if err := run(*endpoints); err != nil {
		fmt.Fprintln(os.Stderr, "watch:", err)
		os.Exit(1)
	}
}

// writes is how many changes the writer makes; the first watch stops
// after firstPart of them.
const (
	writes    = 12
	firstPart = 5
)

func run(endpoints string) error {
	c, err := client.New(client.Config{Endpoints: strings.Split(endpoints, ",")})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	prefix := "examples/watch/" + runTag() + "/"

	// From revision 0 means from now: every write acknowledged after
	// Watch returns is delivered.
	w, err := c.Watch(ctx, prefix, 0)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	fmt.Printf("watching %s from revision %d\n", prefix, w.StartRevision())

	// A writer changes keys under the prefix: puts, then a delete.
	type ack struct {
		revs []int64
		err  error
	}
	acked := make(chan ack, 1)
	go func() {
		var revs []int64
		for i := range writes {
			var rev int64
			var err error
			if i == writes-1 {
				rev, err = c.Delete(ctx, prefix+"job/1")
			} else {
				rev, err = c.Put(ctx, fmt.Sprintf("%sjob/%d", prefix, i%4), fmt.Appendf(nil, `{"run":%d}`, i))
			}
			if err != nil {
				acked <- ack{revs, err}
				return
			}
			revs = append(revs, rev)
			time.Sleep(5 * time.Millisecond) // a pace a person can follow
		}
		acked <- ack{revs, nil}
	}()

	// Take the first changes, then stop watching.
	var seen []int64
	last, err := receive(ctx, w, firstPart, &seen)
	w.Close()
	if err != nil {
		return err
	}
	fmt.Printf("stopped watching after %d changes, the last at revision %d\n", len(seen), last)

	// The writer goes on meanwhile; wait for it to finish.
	a := <-acked
	if a.err != nil {
		return fmt.Errorf("writer: %w", a.err)
	}
	fmt.Printf("the writer made %d changes, revisions %d to %d\n", len(a.revs), a.revs[0], a.revs[len(a.revs)-1])

	// Resume after the last revision seen: the changes made while we were
	// not watching are delivered from the server's history.
	w, err = c.Watch(ctx, prefix, last+1)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	defer w.Close()
	fmt.Printf("resumed from revision %d\n", last+1)
	if _, err := receive(ctx, w, len(a.revs)-len(seen), &seen); err != nil {
		return err
	}
	if !slices.Equal(seen, a.revs) {
		return fmt.Errorf("watched revisions %v, written %v", seen, a.revs)
	}
	fmt.Printf("saw all %d changes, in revision order, none missed or repeated\n", len(seen))

	var keys []string
	for k, err := range c.Keys(ctx, prefix) {
		if err != nil {
			return fmt.Errorf("keys: %w", err)
		}
		keys = append(keys, k)
	}
	for _, k := range keys {
		if _, err := c.Delete(ctx, k); err != nil {
			return fmt.Errorf("clean up: %w", err)
		}
	}
	fmt.Println("cleaned up; done")
	return nil
}

// receive prints the changes w delivers until n more have arrived,
// appending their revisions to seen, and returns the last one's.
func receive(ctx context.Context, w *client.Watcher, n int, seen *[]int64) (int64, error) {
	var last int64
	for got := 0; got < n; {
		select {
		case resp, ok := <-w.C():
			if !ok {
				return last, fmt.Errorf("the watch ended: %w", w.Err())
			}
			for _, ev := range resp.Events {
				if got == n {
					break // the rest come again after a resume
				}
				switch ev.Type {
				case kv.EventPut:
					fmt.Printf("  revision %d: put %s = %s\n", ev.Item.Revision, ev.Item.Key, ev.Item.Value)
				case kv.EventDelete:
					fmt.Printf("  revision %d: delete %s\n", ev.Item.Revision, ev.Item.Key)
				}
				*seen = append(*seen, ev.Item.Revision)
				last = ev.Item.Revision
				got++
			}
		case <-ctx.Done():
			return last, fmt.Errorf("waiting for changes: %w", ctx.Err())
		}
	}
	return last, nil
}

// runTag is a random tag for this run's keys.
func runTag() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
