// Command etcdctl is etcd's command-line client, built from its Go module
// at the version this module's go.mod pins.
package main

import "go.etcd.io/etcd/etcdctl/v3/ctlv3"

func main() { ctlv3.MustStart() }
