// Command basic-kv shows the key-value basics with the Go client: put,
// get, a conditional put (compare-and-set on the revision), delete, and a
// list by prefix.
//
//	go run ./cmd/consensus up            # in one terminal
//	go run ./examples/basic-kv           # in another
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
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
		fmt.Fprintln(os.Stderr, "basic-kv:", err)
		os.Exit(1)
	}
}

func run(endpoints string) error {
	// The client tries the endpoints in turn, retries where it is safe,
	// and gives every write a request id so a retry is applied once.
	c, err := client.New(client.Config{Endpoints: strings.Split(endpoints, ",")})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	st, err := c.Status(ctx)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	fmt.Printf("connected to %s; the leader is %s (term %d)\n", st.NodeID, st.LeaderID, st.Term)

	// A prefix of our own, so that runs do not meet each other's keys.
	prefix := "examples/basic-kv/" + runTag() + "/"
	key := prefix + "greeting"

	rev, err := c.Put(ctx, key, []byte(`{"text":"hello"}`))
	if err != nil {
		return fmt.Errorf("put: %w", err)
	}
	fmt.Printf("put %s = {\"text\":\"hello\"} at revision %d\n", key, rev)

	// Reads are linearizable by default: they see every acknowledged write.
	it, err := c.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	fmt.Printf("get %s: %s (revision %d, version %d)\n", key, it.Value, it.Revision, it.Version)

	// A conditional put applies only if the key is still at the revision
	// we read: nobody changed it in between.
	rev2, err := c.PutIf(ctx, key, []byte(`{"text":"hello, world"}`), kv.IfRevision(it.Revision))
	if err != nil {
		return fmt.Errorf("conditional put: %w", err)
	}
	fmt.Printf("conditional put at revision %d succeeded: now revision %d\n", it.Revision, rev2)

	// The same condition again is stale now: refused, nothing written.
	_, err = c.PutIf(ctx, key, []byte(`{"text":"lost update"}`), kv.IfRevision(it.Revision))
	if !errors.Is(err, kv.ErrConflict) {
		return fmt.Errorf("conditional put on a stale revision: got %v, want a conflict", err)
	}
	fmt.Printf("conditional put on stale revision %d refused: %v\n", it.Revision, err)
	_, err = c.PutIf(ctx, key, []byte(`{"text":"again"}`), kv.IfAbsent())
	if !errors.Is(err, kv.ErrConflict) {
		return fmt.Errorf("create-only put of an existing key: got %v, want a conflict", err)
	}
	fmt.Println("create-only put of an existing key refused, as it should be")

	// A few more keys, then list them by prefix, sorted by key.
	for _, color := range []string{"red", "green", "blue"} {
		if _, err := c.Put(ctx, prefix+"colors/"+color, fmt.Appendf(nil, "%q", color)); err != nil {
			return fmt.Errorf("put: %w", err)
		}
	}
	// A list is read in pages at one revision (the first page's); List
	// iterates the items, Pages the pages with their revision.
	var items []kv.Item
	var listRev int64
	for page, err := range c.Pages(ctx, prefix+"colors/") {
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		items, listRev = append(items, page.Items...), page.Revision
	}
	fmt.Printf("listed %d keys under %scolors/ at revision %d:\n", len(items), prefix, listRev)
	for _, it := range items {
		fmt.Printf("  %s = %s (revision %d)\n", it.Key, it.Value, it.Revision)
	}
	if len(items) != 3 {
		return fmt.Errorf("listed %d keys, want 3", len(items))
	}

	// Delete, and the key is gone.
	delRev, err := c.Delete(ctx, key)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if _, err := c.Get(ctx, key); !errors.Is(err, kv.ErrKeyNotFound) {
		return fmt.Errorf("get after delete: got %v, want not found", err)
	}
	fmt.Printf("deleted %s at revision %d; a get now answers: key not found\n", key, delRev)

	for _, it := range items {
		if _, err := c.Delete(ctx, it.Key); err != nil {
			return fmt.Errorf("clean up: %w", err)
		}
	}
	fmt.Println("cleaned up; done")
	return nil
}

// runTag is a random tag for this run's keys.
func runTag() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
