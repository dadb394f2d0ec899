// Command consensus runs and operates consensus nodes.
//
//	consensus serve --id n1 --listen 127.0.0.1:8080 --http 127.0.0.1:9080 --peers n1=127.0.0.1:8080,...
//	consensus up    # a local 3-node cluster
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `consensus: a Raft coordination service.

Usage:
  consensus serve [flags]   run one node (see: consensus serve --help)
  consensus up [flags]      run a local cluster of nodes (see: consensus up --help)
  consensus bench [flags]   measure a cluster: throughput, latency, failover (see: consensus bench --help)
  consensus certs [flags]   write a development CA and node certificates
  consensus snapshot save|status|restore   back up a cluster, check a backup, restore one (see: consensus snapshot help)
  consensus version         print the version
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit code: 0 on
// success, 2 for usage errors, 1 for failures.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serveCmd(args[1:], stdout, stderr)
	case "up":
		return upCmd(args[1:], stdout, stderr)
	case "bench":
		return benchCmd(args[1:], stdout, stderr)
	case "certs":
		return certsCmd(args[1:], stdout, stderr)
	case "snapshot":
		return snapshotCmd(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "consensus", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "consensus: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
