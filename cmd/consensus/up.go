package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/unrdf/consensus/internal/certs"
)

// upCmd runs a local cluster as child `consensus serve` processes, so each
// node is a real process that can be killed and restarted on its own.
func upCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodes := fs.Int("nodes", 3, "number of nodes")
	dataDir := fs.String("data", "data", "parent directory of the nodes' data directories")
	peerPort := fs.Int("peer-port", 8080, "peer port of the first node; node k uses peer-port+k-1")
	httpPort := fs.Int("http-port", 9080, "HTTP port of the first node; node k uses http-port+k-1")
	logLevel := fs.String("log-level", "warn", "log level of the nodes")
	useTLS := fs.Bool("tls", false, "mutual TLS between peers and HTTPS for the API, with development certificates (made under --certs if missing)")
	certDir := fs.String("certs", "", "directory of the development certificates for --tls (default <data>/certs)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *nodes < 1 || *nodes > 9 {
		fmt.Fprintln(stderr, "up: --nodes must be between 1 and 9")
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "up: cannot find own executable:", err)
		return 1
	}

	specs := localNodes(*nodes, *dataDir, func(i int) (string, string) {
		return fmt.Sprintf("127.0.0.1:%d", *peerPort+i), fmt.Sprintf("127.0.0.1:%d", *httpPort+i)
	})
	peers := peersFlag(specs)
	scheme, readyClient := "http", &http.Client{Timeout: time.Second}
	tlsFlags := map[string][]string{}
	if *useTLS {
		if *certDir == "" {
			*certDir = filepath.Join(*dataDir, "certs")
		}
		ids := make([]string, len(specs))
		for i, sp := range specs {
			ids[i] = sp.id
		}
		if err := ensureDevCerts(*certDir, ids); err != nil {
			fmt.Fprintln(stderr, "up:", err)
			return 1
		}
		ca := filepath.Join(*certDir, "ca.pem")
		cliTLS, err := certs.ClientConfig("", "", ca)
		if err != nil {
			fmt.Fprintln(stderr, "up:", err)
			return 1
		}
		scheme = "https"
		readyClient.Transport = &http.Transport{TLSClientConfig: cliTLS}
		for _, sp := range specs {
			cert, key := filepath.Join(*certDir, sp.id+".pem"), filepath.Join(*certDir, sp.id+"-key.pem")
			tlsFlags[sp.id] = []string{"--cert", cert, "--key", key,
				"--peer-cert", cert, "--peer-key", key, "--peer-ca", ca, "--api-ca", ca}
		}
	}

	var outMu sync.Mutex
	var wg sync.WaitGroup
	cmds := make([]*exec.Cmd, len(specs))
	exited := make(chan string, len(specs))
	for i, sp := range specs {
		cmd := serveCommand(self, sp, peers, *logLevel, tlsFlags[sp.id]...)
		outPipe, _ := cmd.StdoutPipe()
		errPipe, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(stderr, "up: start %s: %v\n", sp.id, err)
			stopAll(cmds[:i])
			return 1
		}
		cmds[i] = cmd
		for _, p := range []io.Reader{outPipe, errPipe} {
			wg.Add(1)
			go func(r io.Reader, prefix string) {
				defer wg.Done()
				copyLines(r, stderr, &outMu, prefix)
			}(p, sp.id)
		}
		go func(id string, cmd *exec.Cmd) {
			err := cmd.Wait()
			outMu.Lock()
			fmt.Fprintf(stderr, "[%s] exited: %v\n", id, errOrOK(err))
			outMu.Unlock()
			exited <- id
		}(sp.id, cmd)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	ready := true
	for _, sp := range specs {
		ready = ready && waitReadyWith(ctx, readyClient, scheme+"://"+sp.http)
	}
	cancel()
	outMu.Lock()
	if ready {
		fmt.Fprintf(stdout, "consensus: %d-node cluster is up (data under %s/)\n", len(specs), *dataDir)
	} else {
		fmt.Fprintf(stdout, "consensus: %d nodes started but not all are ready yet; see their logs\n", len(specs))
	}
	for _, sp := range specs {
		fmt.Fprintf(stdout, "  %s  %s://%s  (peers %s)\n", sp.id, scheme, sp.http, sp.peer)
	}
	curl := "curl -s"
	if *useTLS {
		curl = "curl -s --cacert " + filepath.Join(*certDir, "ca.pem")
		fmt.Fprintf(stdout, "\nPeers use mutual TLS; the API is HTTPS with certificates from %s/.\n", *certDir)
	}
	fmt.Fprintf(stdout, "\nTry:\n  %s -X PUT %s://%s/v1/kv/workflow:demo -d '{\"status\":\"running\"}'\n", curl, scheme, specs[0].http)
	fmt.Fprintf(stdout, "  %s %s://%s/v1/kv/workflow:demo\n", curl, scheme, specs[len(specs)-1].http)
	fmt.Fprintf(stdout, "  %s %s://%s/v1/status\n", curl, scheme, specs[0].http)
	if !*useTLS && *peerPort == 8080 && *httpPort == 9080 && len(specs) == 3 {
		// The client commands' default endpoints are this cluster.
		fmt.Fprintf(stdout, "  consensus status\n  consensus kv put workflow:demo '{\"status\":\"running\"}'\n")
	}
	fmt.Fprintf(stdout, "\nDashboard: %s://%s/\n\nPress Ctrl-C to stop.\n", scheme, specs[0].http)
	outMu.Unlock()

	remaining := len(specs)
	for remaining > 0 {
		select {
		case <-sigs:
			fmt.Fprintln(stdout, "\nconsensus: stopping the cluster")
			stopAll(cmds)
			for remaining > 0 {
				<-exited
				remaining--
			}
		case <-exited:
			remaining--
		}
	}
	wg.Wait()
	return 0
}

// stopAll asks every node to stop, then kills those still running after
// ten seconds.
func stopAll(cmds []*exec.Cmd) {
	for _, c := range cmds {
		if c != nil && c.Process != nil {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
	}
	go func() {
		time.Sleep(10 * time.Second)
		for _, c := range cmds {
			if c != nil && c.Process != nil {
				_ = c.Process.Kill()
			}
		}
	}()
}

// ensureDevCerts makes development certificates for ids in dir unless
// they are all there already.
func ensureDevCerts(dir string, ids []string) error {
	missing := false
	for _, f := range append([]string{"ca"}, ids...) {
		if _, err := os.Stat(filepath.Join(dir, f+".pem")); err != nil {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.pem")); err == nil {
		return fmt.Errorf("%s has a CA but not a certificate for every node; remove it to make new ones", dir)
	}
	return certs.WriteDev(dir, ids)
}

func errOrOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
