package main

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// localNode is one node of a cluster that up or bench runs on this machine
// as a child `consensus serve` process.
type localNode struct{ id, peer, http, data string }

// localNodes lays out n nodes named n1..nN, node i (from 0) with the peer
// and HTTP addresses addrs returns for it and its data under dataDir/<id>.
func localNodes(n int, dataDir string, addrs func(i int) (peer, http string)) []localNode {
	nodes := make([]localNode, n)
	for i := range nodes {
		id := fmt.Sprintf("n%d", i+1)
		peer, http := addrs(i)
		nodes[i] = localNode{id: id, peer: peer, http: http, data: filepath.Join(dataDir, id)}
	}
	return nodes
}

// peersFlag is the --peers value naming every node.
func peersFlag(nodes []localNode) string {
	list := make([]string, len(nodes))
	for i, n := range nodes {
		list[i] = n.id + "=" + n.peer
	}
	return strings.Join(list, ",")
}

// serveCommand returns the unstarted command that runs n as a child of this
// process (self is its executable), with --peers peers. The child gets its
// own process group, so a terminal's Ctrl-C reaches only the parent, which
// stops the nodes in order; Pdeathsig stops it if the parent is killed.
//
// extra flags are appended (up --tls passes certificate flags).
func serveCommand(self string, n localNode, peers, logLevel string, extra ...string) *exec.Cmd {
	args := []string{"serve", "--id", n.id, "--listen", n.peer, "--http", n.http,
		"--peers", peers, "--data", n.data, "--log-level", logLevel}
	cmd := exec.Command(self, append(args, extra...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	return cmd
}

// copyLines copies r to w line by line, each line prefixed "[prefix] ",
// holding mu while it writes one and calls onLine (if set) with it.
func copyLines(r io.Reader, w io.Writer, mu *sync.Mutex, prefix string, onLine func(line string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mu.Lock()
		fmt.Fprintf(w, "[%s] %s\n", prefix, sc.Text())
		if onLine != nil {
			onLine(sc.Text())
		}
		mu.Unlock()
	}
	// A line too long for the buffer ends the scan; keep draining, so
	// the process never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}
