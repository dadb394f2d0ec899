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
