// Command hop measures the floor of one network hop between two processes
// on this machine: it starts a copy of itself that echoes, then sends it
// one small message at a time over loopback TCP and times each round
// trip; a hop is half a round trip.
//
//	go run ./internal/stages/hop [-n 5000] [-size 128] [-gap 500us]
//
// With -gap it waits that long between round trips (sleeping), so both
// processes go idle as the nodes do while a write's fsync runs, and each
// message has to wake its reader again.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// echoEnv makes the child process echo instead of measuring.
const echoEnv = "CONSENSUS_HOP_ECHO"

func main() {
	if os.Getenv(echoEnv) != "" {
		if err := echoMain(); err != nil {
			fmt.Fprintln(os.Stderr, "hop echo:", err)
			os.Exit(1)
		}
		return
	}
	n := flag.Int("n", 5000, "round trips")
	size := flag.Int("size", 128, "bytes per message")
	gap := flag.Duration("gap", 0, "pause between round trips")
	flag.Parse()
	if *n < 1 || *size < 1 || *size > 1<<20 || *gap < 0 || *gap > time.Second {
		fmt.Fprintln(os.Stderr, "hop: -n >= 1, -size in [1, 1MiB], -gap in [0, 1s]")
		os.Exit(2)
	}
	rtts, err := measureChild(*n, *size, *gap)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hop:", err)
		os.Exit(1)
	}
	p := percentiles(rtts)
	fmt.Printf("%d round trips of %d B, gap %v: round trip p50 %v p90 %v p99 %v; one hop (half) p50 %v\n",
		len(rtts), *size, *gap, p[0], p[1], p[2], p[0]/2)
}

// measureChild starts the echoing copy of this program and measures n
// round trips to it.
func measureChild(n, size int, gap time.Duration) ([]time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), echoEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("reading the echo's address: %w", err)
	}
	conn, err := net.DialTimeout("tcp", strings.TrimSpace(addr), 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return roundTrips(conn, n, size, gap)
}

// roundTrips sends n messages of size bytes on conn, each after the echo
// of the one before (and gap), and returns each one's round trip.
func roundTrips(conn net.Conn, n, size int, gap time.Duration) ([]time.Duration, error) {
	msg, back := make([]byte, size), make([]byte, size)
	rtts := make([]time.Duration, 0, n)
	for range n {
		if gap > 0 {
			time.Sleep(gap)
		}
		if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return nil, err
		}
		start := time.Now()
		if _, err := conn.Write(msg); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(conn, back); err != nil {
			return nil, err
		}
		rtts = append(rtts, time.Since(start))
	}
	return rtts, nil
}

// echoMain listens on a loopback port, prints its address, and echoes
// the one connection it accepts until it closes.
func echoMain() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println(ln.Addr())
	conn, err := ln.Accept()
	if err != nil {
		return err
	}
	defer conn.Close()
	return echo(conn)
}

// echo writes back whatever it reads, as it reads it.
func echo(conn net.Conn) error {
	buf := make([]byte, 64<<10)
	for {
		k, err := conn.Read(buf)
		if k > 0 {
			if _, werr := conn.Write(buf[:k]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// percentiles returns the 50th, 90th and 99th percentiles of d, sorting it.
func percentiles(d []time.Duration) [3]time.Duration {
	slices.Sort(d)
	at := func(q int) time.Duration { return d[min(len(d)-1, len(d)*q/100)] }
	return [3]time.Duration{at(50), at(90), at(99)}
}
