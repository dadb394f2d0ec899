package main

import (
	"net"
	"testing"
	"time"
)

// TestRoundTrips measures round trips to an echo in this process: every
// message comes back whole and each round trip is timed.
func TestRoundTrips(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		done <- echo(conn)
	}()
	conn, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rtts, err := roundTrips(conn, 50, 100_000, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rtts) != 50 {
		t.Fatalf("%d round trips, want 50", len(rtts))
	}
	for _, d := range rtts {
		if d <= 0 {
			t.Fatalf("round trip of %v", d)
		}
	}
	_ = conn.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("echo: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("echo did not end after the connection closed")
	}
	p := percentiles(rtts)
	if p[0] > p[1] || p[1] > p[2] {
		t.Fatalf("percentiles out of order: %v", p)
	}
}
