package etcdapi_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus/backup"
)

// TestEtcdctlSnapshotSave takes a backup with the real etcdctl's
// `snapshot save` (etcd's Maintenance.Snapshot) and checks that the file
// it keeps is a whole backup of the state: etcdctl's own check of the
// download (a multiple of 512 bytes plus a SHA-256) passes, and the
// backup inside verifies and holds every key.
func TestEtcdctlSnapshotSave(t *testing.T) {
	if testing.Short() {
		t.Skip("builds etcdctl")
	}
	bin := buildEtcdctl(t)
	c, eps := fixedEtcdCluster(t, 3)
	c.WaitLeader(t, 10*time.Second)
	ctl := &transcript{t: t, bin: bin, eps: eps}
	const n = 300
	var txn strings.Builder
	for i := range n {
		fmt.Fprintf(&txn, "put snap/k%03d v%d\n", i, i)
		if (i+1)%100 == 0 {
			if out, stderr, code := ctl.exec("\n"+txn.String()+"\n\n", "txn", "-i"); code != 0 {
				t.Fatalf("fill: %s %s", out, stderr)
			}
			txn.Reset()
		}
	}

	file := filepath.Join(t.TempDir(), "etcd.snapshot")
	// etcdctl takes a snapshot from one endpoint only.
	out, stderr, code := ctl.exec("", "--endpoints="+eps[1], "snapshot", "save", file)
	if code != 0 {
		t.Fatalf("snapshot save: exit %d: %s %s", code, out, stderr)
	}
	if !strings.Contains(out, "Snapshot saved at "+file) {
		t.Fatalf("snapshot save printed %q", out)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	r, err := backup.Unwrap(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	if r.Size() == fi.Size() {
		t.Fatalf("the %d-byte file is not in etcd's envelope", fi.Size())
	}
	meta, sum, err := backup.Verify(r)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if meta.Keys != n || meta.ClusterID == 0 || sum.Size != r.Size() {
		t.Fatalf("backup of %d keys (cluster %x, %d bytes of %d), want %d keys", meta.Keys, meta.ClusterID, sum.Size, r.Size(), n)
	}
}
