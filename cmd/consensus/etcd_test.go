package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"

	"github.com/unrdf/consensus/server"
)

// TestServeEtcdListenInUse checks that serve whose --etcd-listen port is
// taken fails at start with one line naming the flag, and writes nothing.
func TestServeEtcdListenInUse(t *testing.T) {
	data := filepath.Join(t.TempDir(), "n1")
	peer, httpAddr, etcdAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	busy, err := net.Listen("tcp", etcdAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	r := runCLI(context.Background(), "", "serve", "--id", "n1", "--listen", peer, "--http", httpAddr,
		"--etcd-listen", etcdAddr, "--data", data, "--log-level", "warn")
	checkOneLine(t, nil, r)
	if r.code != exitFailure || !strings.Contains(r.stderr, "--etcd-listen: ") || !strings.Contains(r.stderr, "address already in use") {
		t.Fatalf("serve with its etcd port taken: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("a start that could not bind its etcd port left %s behind (%v)", data, err)
	}
	r = runCLI(context.Background(), "", "serve", "--id", "n1", "--etcd-listen", "nohost", "--data", data)
	if r.code != exitUsage || !strings.Contains(r.stderr, `--etcd-listen "nohost"`) {
		t.Fatalf("serve --etcd-listen nohost: exit %d, stderr %q", r.code, r.stderr)
	}
}

// checkUpEtcd checks that the cluster `up` printed (stdout) serves etcd's
// v3 API on etcdPort and the two ports after it, with the token file's
// tokens: a put on the first node reads back on the third, and a call
// without a token is refused.
func checkUpEtcd(t *testing.T, stdout, tokens string, etcdPort int) {
	t.Helper()
	eps := []string{fmt.Sprintf("127.0.0.1:%d", etcdPort), fmt.Sprintf("127.0.0.1:%d", etcdPort+1), fmt.Sprintf("127.0.0.1:%d", etcdPort+2)}
	if want := "etcd v3 API (etcdctl --endpoints, clientv3; docs/ETCD.md): " + strings.Join(eps, ","); !strings.Contains(stdout, want) {
		t.Errorf("up does not print %q:\n%s", want, stdout)
	}
	token, err := server.FirstToken(tokens, server.RoleReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	for i, ep := range []string{eps[0], eps[2]} {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		if i == 0 {
			if _, err := cli.Put(authed, "etcd/up", "yes"); err != nil {
				t.Fatalf("etcd put on %s: %v", ep, err)
			}
			if _, err := cli.Get(ctx, "etcd/up"); !errors.Is(err, rpctypes.ErrUserEmpty) {
				t.Errorf("etcd get without a token: %v", err)
			}
			continue
		}
		got, err := cli.Get(authed, "etcd/up")
		if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "yes" {
			t.Errorf("etcd get on %s: %+v %v", ep, got, err)
		}
	}
}
