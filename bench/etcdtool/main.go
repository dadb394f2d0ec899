// Command benchmark is etcd's benchmark tool (go.etcd.io/etcd/v3's
// tools/benchmark), built from etcd v3.6.8: v3.7.3's root module is not on
// the Go module proxy, v3.6.8's is. It is a client of etcd's v3 API, so it
// drives etcd 3.7.3 and consensus alike; scripts/bench-etcd-tool.sh runs
// it against both.
package main

import (
	"fmt"
	"os"

	"go.etcd.io/etcd/v3/tools/benchmark/cmd"
)

func main() {
	if err := cmd.RootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
