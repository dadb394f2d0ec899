package loopback

import (
	"fmt"
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

// TestFreeAddrNeverRepeats: a process is never handed one port twice,
// since whoever got it first may not have bound it yet. 2,000 random
// picks from about 22,000 ports repeat one with near certainty otherwise
// (a test cluster's two nodes were given one port once).
func TestFreeAddrNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	for i := range 2000 {
		var addr string
		if i%2 == 0 {
			a, err := FreeAddr()
			if err != nil {
				t.Fatal(err)
			}
			addr = a
		} else {
			ln, err := ListenFree()
			if err != nil {
				t.Fatal(err)
			}
			addr = ln.Addr().String()
			ln.Close()
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice, after %d ports", addr, i)
		}
		seen[addr] = true
	}
}

// TestFreePortsAreConsecutiveAndNotGivenAgain: FreePorts's ports are free
// and never handed out again by FreeAddr.
func TestFreePortsAreConsecutiveAndNotGivenAgain(t *testing.T) {
	base, err := FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	for p := base; p < base+3; p++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d of %d..%d: %v", p, base, base+2, err)
		}
		ln.Close()
	}
	for range 3000 {
		a, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		for p := base; p < base+3; p++ {
			if a == fmt.Sprintf("127.0.0.1:%d", p) {
				t.Fatalf("FreeAddr handed out %s, one of FreePorts's", a)
			}
		}
	}
}
