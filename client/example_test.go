package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/server"
)

// A client of a cluster. A one-node server started in this process stands
// in for the cluster (`consensus up` starts a real one); the client only
// needs the HTTP addresses of its members.
func Example() {
	addr, stop, err := startServer()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	// Every call takes a context; writes carry a request id, so the
	// client retries them only where the cluster applies them once.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rev, err := c.Put(ctx, "config:mode", []byte(`"active"`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("put at revision", rev)

	_, err = c.PutIf(ctx, "config:mode", []byte(`"passive"`), kv.IfAbsent())
	fmt.Println("create-only refused:", errors.Is(err, kv.ErrConflict))

	item, err := c.Get(ctx, "config:mode") // linearizable by default
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s = %s (version %d)\n", item.Key, item.Value, item.Version)
	// Output:
	// put at revision 1
	// create-only refused: true
	// config:mode = "active" (version 1)
}

// startServer starts a one-node cluster on loopback ports the system
// picks, with its data in a temporary directory, and returns its HTTP API
// address and a function that stops it and removes the data.
func startServer() (addr string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "consensus-example-")
	if err != nil {
		return "", nil, err
	}
	peerLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		peerLn.Close()
		os.RemoveAll(dir)
		return "", nil, err
	}
	s, err := server.Start(server.Config{ // owns the listeners from here on
		Node:         consensus.DefaultConfig("n1"),
		PeerListener: peerLn,
		HTTPListener: httpLn,
		DataDir:      dir,
	})
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(ctx)
		os.RemoveAll(dir)
	}
	// Wait for the node to elect itself. A client does not have to (it
	// retries a write the cluster answered no_leader), but then its
	// first call would wait out the election and a backoff. A read
	// waits for a leader for up to one election timeout and then fails
	// with ErrNoLeader, which is safe to retry.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		err := s.Node().LinearizableRead(ctx)
		if err == nil {
			return s.HTTPAddr(), stop, nil
		}
		if !errors.Is(err, consensus.ErrNoLeader) || ctx.Err() != nil {
			stop()
			return "", nil, err
		}
	}
}
