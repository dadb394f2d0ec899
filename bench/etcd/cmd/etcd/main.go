// Command etcd is etcd's server, built from its Go module at the version
// this module's go.mod pins, so that the comparison runs against the etcd
// we name (scripts/bench-etcd.sh builds it).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
