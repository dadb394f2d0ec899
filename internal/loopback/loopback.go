// Package loopback hands out 127.0.0.1 addresses that stay free until
// their user binds them.
//
// A port taken with 127.0.0.1:0 and released so that a server or a child
// process can bind it later comes from the kernel's ephemeral range, the
// range every outgoing connection's local port also comes from. Some
// other socket can take it in between, and the later bind fails with
// "address already in use"; a process restarted on its old address after
// kill -9 meets the same race. FreeAddr therefore picks ports below the
// ephemeral range, which the kernel never hands out on its own, and never
// hands out one port twice in a process: only a caller in another process
// picking the same port at random can collide, and a bind that retries
// for a moment rides out a listener that is still closing.
package loopback

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// lowest is the bottom of the range FreeAddr picks from; ports below it
// are left to well-known services.
const lowest = 10000

var (
	rangeOnce sync.Once
	lo, hi    int // FreeAddr picks from [lo, hi); hi == 0 means :0

	// given holds the ports FreeAddr has handed out in this process: it
	// never hands one out twice, since its user may not have bound it yet
	// (two random picks of one test's cluster came out equal once, and a
	// node's bind failed).
	givenMu sync.Mutex
	given   = map[int]bool{}
)

// pickRange reads the ephemeral range and chooses the ports below it.
func pickRange() {
	first := 32768 // Linux's default start of the ephemeral range
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if fields := strings.Fields(string(b)); len(fields) == 2 {
			if n, err := strconv.Atoi(fields[0]); err == nil {
				first = n
			}
		}
	}
	if first-lowest < 1000 {
		return // no room below the ephemeral range: fall back to :0
	}
	lo, hi = lowest, first
}

// FreeAddr returns "127.0.0.1:port" for a port that was free a moment ago
// and that the kernel will not give to another socket on its own.
func FreeAddr() (string, error) {
	rangeOnce.Do(pickRange)
	if hi == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		defer ln.Close()
		return ln.Addr().String(), nil
	}
	givenMu.Lock()
	defer givenMu.Unlock()
	for range 1000 {
		port := lo + rand.IntN(hi-lo)
		if given[port] {
			continue
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // in use: try another
		}
		ln.Close()
		given[port] = true
		return addr, nil
	}
	return "", fmt.Errorf("no free loopback port in [%d, %d)", lo, hi)
}

// FreePorts returns the first of n consecutive ports that were free a
// moment ago, none handed out before in this process (as FreeAddr's).
func FreePorts(n int) (int, error) {
	rangeOnce.Do(pickRange)
	if hi == 0 {
		return 0, errors.New("no room below the ephemeral range for consecutive ports")
	}
	givenMu.Lock()
	defer givenMu.Unlock()
next:
	for range 1000 {
		base := lo + rand.IntN(hi-lo-n)
		for p := base; p < base+n; p++ {
			if given[p] {
				continue next
			}
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				continue next
			}
			ln.Close()
		}
		for p := base; p < base+n; p++ {
			given[p] = true
		}
		return base, nil
	}
	return 0, fmt.Errorf("no %d consecutive free loopback ports in [%d, %d)", n, lo, hi)
}

// ListenFree listens on a port FreeAddr would give and keeps it: the
// caller hands the listener to whoever serves on it, so no other socket
// can take the port in between.
func ListenFree() (net.Listener, error) {
	rangeOnce.Do(pickRange)
	if hi == 0 {
		return net.Listen("tcp", "127.0.0.1:0")
	}
	givenMu.Lock()
	defer givenMu.Unlock()
	for range 1000 {
		port := lo + rand.IntN(hi-lo)
		if given[port] {
			continue // handed out by FreeAddr, perhaps not bound yet
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			given[port] = true
			return ln, nil
		}
	}
	return nil, fmt.Errorf("no free loopback port in [%d, %d)", lo, hi)
}

// Listen listens on addr, retrying for up to wait while the port is
// still held, for example by a listener that is closing.
func Listen(addr string, wait time.Duration) (net.Listener, error) {
	deadline := time.Now().Add(wait)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			return ln, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
