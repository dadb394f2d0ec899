package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/unrdf/consensus/internal/certs"
)

// certsCmd writes a development CA and node certificates.
func certsCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "certs", "directory to write ca.pem and <node>.pem / <node>-key.pem into")
	nodes := fs.String("nodes", "n1,n2,n3", "comma-separated node names to issue certificates for")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var names []string
	for _, n := range strings.Split(*nodes, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		fmt.Fprintln(stderr, "certs: --nodes names no node")
		return 2
	}
	if err := certs.WriteDev(*dir, names); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote a development CA and certificates for %s to %s/ (valid for %s)\n",
		strings.Join(names, ", "), *dir, strings.Join(certs.DefaultHosts, ", "))
	return 0
}
