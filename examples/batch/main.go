// Command batch shows an atomic batch with the Go client (the seed's
// batchUpdate): several writes applied all or nothing at one revision,
// guarded by revision preconditions, and a batch whose precondition fails
// changing nothing at all.
//
//	go run ./cmd/consensus up       # in one terminal
//	go run ./examples/batch         # in another
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
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
		fmt.Fprintln(os.Stderr, "batch:", err)
		os.Exit(1)
	}
}

func run(endpoints string) error {
	c, err := client.New(client.Config{Endpoints: strings.Split(endpoints, ",")})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	prefix := "examples/batch/" + runTag() + "/"
	alice, bob := prefix+"balance/alice", prefix+"balance/bob"

	// Open both accounts in one batch, create-only: both or neither.
	rev, err := c.Batch(ctx, []kv.Op{
		{Type: kv.OpPut, Key: alice, Value: []byte("100"), Cond: kv.IfAbsent()},
		{Type: kv.OpPut, Key: bob, Value: []byte("50"), Cond: kv.IfAbsent()},
	})
	if err != nil {
		return fmt.Errorf("open accounts: %w", err)
	}
	fmt.Printf("opened alice (100) and bob (50) in one batch at revision %d\n", rev)

	a, b, err := balances(ctx, c, alice, bob)
	if err != nil {
		return err
	}
	if a.Revision != rev || b.Revision != rev {
		return fmt.Errorf("accounts at revisions %d and %d, want both %d", a.Revision, b.Revision, rev)
	}
	fmt.Printf("both keys carry the batch's revision %d\n", rev)

	// Move 30 from alice to bob, and record it in a ledger entry, on
	// condition that neither balance changed since we read it.
	transfer := func(amount int64, a, b kv.Item, entry string) (int64, error) {
		av, bv := value(a), value(b)
		return c.Batch(ctx, []kv.Op{
			{Type: kv.OpPut, Key: alice, Value: fmt.Append(nil, av-amount), Cond: kv.IfRevision(a.Revision)},
			{Type: kv.OpPut, Key: bob, Value: fmt.Append(nil, bv+amount), Cond: kv.IfRevision(b.Revision)},
			{Type: kv.OpPut, Key: prefix + "ledger/" + entry, Value: fmt.Appendf(nil, `{"from":"alice","to":"bob","amount":%d}`, amount), Cond: kv.IfAbsent()},
		})
	}
	rev, err = transfer(30, a, b, "1")
	if err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	fmt.Printf("transferred 30 from alice to bob with ledger entry 1, all at revision %d\n", rev)

	// The same transfer again, from the balances read before it: alice's
	// precondition is stale, so the whole batch is refused; bob's balance
	// and the ledger are not touched either.
	_, err = transfer(30, a, b, "2")
	if !errors.Is(err, kv.ErrConflict) {
		return fmt.Errorf("transfer on stale revisions: got %v, want a conflict", err)
	}
	fmt.Printf("a second transfer on the stale revisions was refused: %v\n", err)
	a2, b2, err := balances(ctx, c, alice, bob)
	if err != nil {
		return err
	}
	if value(a2) != 70 || value(b2) != 80 || a2.Revision != rev || b2.Revision != rev {
		return fmt.Errorf("after the refused batch: alice %s at %d, bob %s at %d", a2.Value, a2.Revision, b2.Value, b2.Revision)
	}
	if ok, err := c.Has(ctx, prefix+"ledger/2"); err != nil || ok {
		return fmt.Errorf("ledger entry 2 exists: %v %v", ok, err)
	}
	fmt.Printf("all or nothing: alice %s and bob %s still at revision %d, no ledger entry 2\n", a2.Value, b2.Value, rev)

	// With fresh revisions it goes through.
	rev, err = transfer(30, a2, b2, "2")
	if err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	a3, b3, err := balances(ctx, c, alice, bob)
	if err != nil {
		return err
	}
	fmt.Printf("retried on fresh revisions: alice %s, bob %s at revision %d\n", a3.Value, b3.Value, rev)

	// Clean up in one batch too: deletes are all or nothing as well.
	var ops []kv.Op
	for k, err := range c.Keys(ctx, prefix) {
		if err != nil {
			return fmt.Errorf("keys: %w", err)
		}
		ops = append(ops, kv.Op{Type: kv.OpDelete, Key: k})
	}
	if _, err := c.Batch(ctx, ops); err != nil {
		return fmt.Errorf("clean up: %w", err)
	}
	fmt.Printf("deleted the %d keys in one batch; done\n", len(ops))
	return nil
}

func balances(ctx context.Context, c *client.Client, alice, bob string) (kv.Item, kv.Item, error) {
	a, err := c.Get(ctx, alice)
	if err != nil {
		return a, a, fmt.Errorf("get %s: %w", alice, err)
	}
	b, err := c.Get(ctx, bob)
	if err != nil {
		return a, b, fmt.Errorf("get %s: %w", bob, err)
	}
	return a, b, nil
}

// value is a balance: a JSON integer.
func value(it kv.Item) int64 {
	n, _ := strconv.ParseInt(string(it.Value), 10, 64)
	return n
}

// runTag is a random tag for this run's keys.
func runTag() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
