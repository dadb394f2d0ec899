package loopback

import (
	"net"
	"strconv"
	"testing"
	"time"
)

func TestFreeAddrIsBelowTheEphemeralRangeAndBindable(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("FreeAddr() = %q, %v", addr, err)
	}
	if hi != 0 {
		if p, _ := strconv.Atoi(port); p < lo || p >= hi {
			t.Fatalf("port %d outside [%d, %d)", p, lo, hi)
		}
	}
	ln, err := Listen(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// While it is held, a second Listen waits and then reports the bind error.
	if _, err := Listen(addr, 50*time.Millisecond); err == nil {
		t.Fatal("second Listen on a held address succeeded")
	}
}

func TestListenFreeHoldsAPortBelowTheEphemeralRange(t *testing.T) {
	ln, err := ListenFree()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	if hi != 0 && (p < lo || p >= hi) {
		t.Fatalf("port %d outside [%d, %d)", p, lo, hi)
	}
	// Held: nobody else can bind it.
	if other, err := net.Listen("tcp", ln.Addr().String()); err == nil {
		other.Close()
		t.Fatal("a reserved port could be bound again")
	}
}
