// Command locks shows leases, a lock with fencing tokens and an election
// with the Go client: two workers, each with a Session (a lease kept
// alive in the background), take turns at a lock; the one that lost it
// is refused when it writes with its old token, as a paused holder that
// wakes up late would be; then both campaign for leadership while an
// observer follows every change.
//
//	go run ./cmd/consensus up         # in one terminal
//	go run ./examples/locks           # in another
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

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/kv"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:9080,127.0.0.1:9081,127.0.0.1:9082",
		"HTTP addresses of cluster members, host:port,... (the cluster `consensus up` starts)")
	flag.Parse()
	if err := run(*endpoints); err != nil {
		fmt.Fprintln(os.Stderr, "locks:", err)
		os.Exit(1)
	}
}

func run(endpoints string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	c, err := client.New(client.Config{Endpoints: strings.Split(endpoints, ",")})
	if err != nil {
		return err
	}
	defer c.Close()
	base := "examples/locks/" + runTag()
	lock, data, election := base+"/report", base+"/report-data", base+"/scheduler"

	// Two workers, each with a lease kept alive for as long as it runs.
	a, err := client.NewSession(ctx, c, 3*time.Second)
	if err != nil {
		return fmt.Errorf("session a: %w", err)
	}
	defer a.Close(context.Background())
	b, err := client.NewSession(ctx, c, 3*time.Second)
	if err != nil {
		return fmt.Errorf("session b: %w", err)
	}
	defer b.Close(context.Background())
	fmt.Printf("worker a holds lease %s, worker b lease %s (time to live %v, kept alive in the background)\n",
		a.Lease(), b.Lease(), a.TTL())

	// a takes the lock and writes with its token as the fence.
	held, err := a.Lock(ctx, lock, 5*time.Second)
	if err != nil {
		return fmt.Errorf("a locks: %w", err)
	}
	fmt.Printf("worker a holds %s with fencing token %d\n", lock, held.Token)
	fenceA := client.WithFence(ctx, api.Fence{Lock: lock, Token: held.Token})
	if _, err := c.Put(fenceA, data, []byte(`{"by":"a","part":1}`)); err != nil {
		return fmt.Errorf("a's fenced write: %w", err)
	}
	fmt.Println("worker a wrote part 1, fenced by its token")

	// b tries once: the lock is held.
	if _, err := b.Lock(ctx, lock, 0); !errors.Is(err, kv.ErrLocked) {
		return fmt.Errorf("b's try while a holds the lock: %v, want locked", err)
	}
	fmt.Println("worker b tried the lock once: locked")

	// b waits; a's lease goes (revoked here; a dead worker's would
	// expire), and the lock passes to b with a larger token.
	got := make(chan api.Lock, 1)
	waitErr := make(chan error, 1)
	go func() {
		l, err := b.Lock(ctx, lock, 20*time.Second)
		if err != nil {
			waitErr <- err
			return
		}
		got <- l
	}()
	if _, err := c.Revoke(ctx, a.Lease()); err != nil {
		return fmt.Errorf("revoke a's lease: %w", err)
	}
	var second api.Lock
	select {
	case second = <-got:
	case err := <-waitErr:
		return fmt.Errorf("b waits for the lock: %w", err)
	}
	if second.Token <= held.Token {
		return fmt.Errorf("b's token %d is not above a's %d", second.Token, held.Token)
	}
	fmt.Printf("worker a's lease is gone; worker b now holds the lock with token %d (> %d)\n", second.Token, held.Token)

	// a wakes up late and writes with its old token: refused, nothing
	// changed. b's write goes through.
	if _, err := c.Put(fenceA, data, []byte(`{"by":"a","part":2}`)); !errors.Is(err, kv.ErrFenced) {
		return fmt.Errorf("a's late fenced write: %v, want fenced", err)
	}
	fmt.Println("worker a's late write with token", held.Token, "was refused: fenced")
	fenceB := client.WithFence(ctx, api.Fence{Lock: lock, Token: second.Token})
	if _, err := c.Put(fenceB, data, []byte(`{"by":"b","part":2}`)); err != nil {
		return fmt.Errorf("b's fenced write: %w", err)
	}
	it, err := c.Get(ctx, data)
	if err != nil {
		return err
	}
	fmt.Printf("%s = %s: only the holder's writes\n", data, it.Value)
	if err := c.Unlock(ctx, lock, second.Token); err != nil {
		return fmt.Errorf("b unlocks: %w", err)
	}

	// An election: b leads first, a (with a new session) waits; an
	// observer sees each leader in turn.
	a2, err := client.NewSession(ctx, c, 3*time.Second)
	if err != nil {
		return fmt.Errorf("session a2: %w", err)
	}
	defer a2.Close(context.Background())
	octx, stop := context.WithCancel(ctx)
	defer stop()
	seen, err := c.Observe(octx, election)
	if err != nil {
		return fmt.Errorf("observe: %w", err)
	}
	lead, err := b.Campaign(ctx, election, []byte(`{"host":"b"}`), 5*time.Second)
	if err != nil {
		return fmt.Errorf("b campaigns: %w", err)
	}
	fmt.Printf("worker b leads %s with token %d\n", election, lead.Token)
	next := make(chan api.Lock, 1)
	go func() {
		if l, err := a2.Campaign(ctx, election, []byte(`{"host":"a"}`), 20*time.Second); err == nil {
			next <- l
		}
	}()
	// The observer's first leader with a value is b; after b resigns, a.
	want := []string{`{"host":"b"}`, `{"host":"a"}`}
	for len(want) > 0 {
		select {
		case l, ok := <-seen:
			if !ok {
				return errors.New("the observer stopped")
			}
			if l == nil || string(l.Value) != want[0] {
				continue // no leader, or the value not proclaimed yet
			}
			fmt.Printf("observer: the leader is %s (token %d)\n", l.Value, l.Token)
			want = want[1:]
			if len(want) == 1 {
				if err := c.Resign(ctx, election, lead.Token); err != nil {
					return fmt.Errorf("b resigns: %w", err)
				}
				fmt.Println("worker b resigned")
			}
		case <-ctx.Done():
			return fmt.Errorf("observer: still waiting for %v: %w", want, ctx.Err())
		}
	}
	l := <-next
	if err := c.Resign(ctx, election, l.Token); err != nil {
		return fmt.Errorf("a resigns: %w", err)
	}
	if _, err := c.Delete(ctx, data); err != nil {
		return fmt.Errorf("clean up: %w", err)
	}
	fmt.Println("cleaned up; done")
	return nil
}

// runTag is a random tag for this run's names.
func runTag() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
