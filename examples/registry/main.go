// Command registry keeps a registry of stores in the cluster, in the
// style of the seed's federation (registerStore through raft), with the
// Go client: each store registered under store:<id> with a create-only
// put, heartbeats as compare-and-set updates, listing, deregistration.
//
//	go run ./cmd/consensus up         # in one terminal
//	go run ./examples/registry        # in another
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/kv"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:9080,127.0.0.1:9081,127.0.0.1:9082",
		"HTTP addresses of cluster members, host:port,... (the cluster `consensus up` starts)")
	federation := flag.String("federation", "", "federation id, the namespace of the stores (default: fed-<random>)")
	flag.Parse()
	if *federation == "" {
		*federation = "fed-" + runTag()
	}
	if err := run(*endpoints, *federation); err != nil {
		fmt.Fprintln(os.Stderr, "registry:", err)
		os.Exit(1)
	}
}

// store is a registry entry, the JSON value under store:<federation>/<id>.
type store struct {
	StoreID      string `json:"storeId"`
	Endpoint     string `json:"endpoint"`
	RegisteredAt int64  `json:"registeredAt"`
	HeartbeatAt  int64  `json:"heartbeatAt"`
	Beats        int    `json:"beats"`
}

// registry is the stores of one federation.
type registry struct {
	c      *client.Client
	prefix string // store:<federation>/
}

func (r registry) key(id string) string { return r.prefix + id }

// register adds a store; it fails with kv.ErrConflict if one with that id
// is registered already (a create-only put), so two registrations of one
// id never overwrite each other.
func (r registry) register(ctx context.Context, id, endpoint string) (int64, error) {
	now := time.Now().UnixMilli()
	v, _ := json.Marshal(store{StoreID: id, Endpoint: endpoint, RegisteredAt: now, HeartbeatAt: now})
	return r.c.PutIf(ctx, r.key(id), v, kv.IfAbsent())
}

// heartbeat records that a store is alive: a read-modify-write that the
// client retries on a conflict, so concurrent heartbeats are never lost.
// calls counts how often the update function ran.
func (r registry) heartbeat(ctx context.Context, id string, calls *atomic.Int64) (int64, error) {
	return r.c.Update(ctx, r.key(id), func(cur kv.Item, exists bool) ([]byte, error) {
		calls.Add(1)
		if !exists {
			return nil, fmt.Errorf("store %s is not registered", id)
		}
		var s store
		if err := json.Unmarshal(cur.Value, &s); err != nil {
			return nil, err
		}
		s.HeartbeatAt = time.Now().UnixMilli()
		s.Beats++
		return json.Marshal(s)
	})
}

func (r registry) list(ctx context.Context) ([]store, int64, error) {
	var out []store
	var rev int64
	for page, err := range r.c.Pages(ctx, r.prefix) {
		if err != nil {
			return nil, 0, err
		}
		rev = page.Revision
		for _, it := range page.Items {
			var s store
			if err := json.Unmarshal(it.Value, &s); err != nil {
				return nil, 0, fmt.Errorf("%s: %w", it.Key, err)
			}
			out = append(out, s)
		}
	}
	return out, rev, nil
}

// deregister removes a store, only if it is still the entry we read: a
// store that re-registered meanwhile is not removed by mistake.
func (r registry) deregister(ctx context.Context, id string) (int64, error) {
	it, err := r.c.Get(ctx, r.key(id))
	if err != nil {
		return 0, err
	}
	return r.c.DeleteIf(ctx, r.key(id), kv.IfRevision(it.Revision))
}

func run(endpoints, federation string) error {
	c, err := client.New(client.Config{Endpoints: strings.Split(endpoints, ",")})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := registry{c: c, prefix: "store:" + federation + "/"}
	fmt.Printf("federation %s: stores under %s<id>\n", federation, r.prefix)

	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("store-%d", i)
		rev, err := r.register(ctx, id, fmt.Sprintf("http://store%d:3000", i))
		if err != nil {
			return fmt.Errorf("register %s: %w", id, err)
		}
		fmt.Printf("registered %s (http://store%d:3000) at revision %d\n", id, i, rev)
	}
	if _, err := r.register(ctx, "store-1", "http://impostor:3000"); !errors.Is(err, kv.ErrConflict) {
		return fmt.Errorf("second registration of store-1: got %v, want a conflict", err)
	}
	fmt.Println("a second registration of store-1 was refused: already registered")

	// Three goroutines heartbeat store-1 at once; each heartbeat is a
	// compare-and-set, retried when another got in first.
	const goroutines, beats = 3, 5
	var calls atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range beats {
				if _, err := r.heartbeat(ctx, "store-1", &calls); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	for _, id := range []string{"store-2", "store-3"} {
		if _, err := r.heartbeat(ctx, id, &calls); err != nil {
			return fmt.Errorf("heartbeat %s: %w", id, err)
		}
	}

	stores, rev, err := r.list(ctx)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	fmt.Printf("%d stores registered at revision %d:\n", len(stores), rev)
	for _, s := range stores {
		fmt.Printf("  %-8s %-20s beats %2d, last at %s\n", s.StoreID, s.Endpoint, s.Beats,
			time.UnixMilli(s.HeartbeatAt).Format("15:04:05.000"))
	}
	if len(stores) != 3 || stores[0].StoreID != "store-1" || stores[0].Beats != goroutines*beats || stores[0].Endpoint != "http://store1:3000" {
		return fmt.Errorf("registry holds %+v", stores)
	}
	fmt.Printf("%d concurrent heartbeats on store-1, none lost (the update function ran %d times for %d heartbeats: retries after conflicts)\n",
		goroutines*beats, calls.Load(), goroutines*beats+2)

	if _, err := r.deregister(ctx, "store-2"); err != nil {
		return fmt.Errorf("deregister store-2: %w", err)
	}
	stores, _, err = r.list(ctx)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	ids := make([]string, len(stores))
	for i, s := range stores {
		ids[i] = s.StoreID
	}
	if strings.Join(ids, ",") != "store-1,store-3" {
		return fmt.Errorf("after deregistering store-2: %v", ids)
	}
	fmt.Printf("deregistered store-2; registered now: %s\n", strings.Join(ids, ", "))

	for _, id := range ids {
		if _, err := r.deregister(ctx, id); err != nil {
			return fmt.Errorf("deregister %s: %w", id, err)
		}
	}
	fmt.Println("deregistered the rest; done")
	return nil
}

// runTag is a random tag for this run's federation.
func runTag() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
