package etcdapi_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus/internal/testwait"
)

// TestEtcdctlMakeMirror is the migration path docs/ETCD.md gives: the real
// etcdctl's make-mirror copies a prefix from one cluster speaking etcd's
// API (here a consensus cluster standing in for the etcd being left) into
// consensus, its base at one revision in pages, then every later put and
// delete as it happens.
func TestEtcdctlMakeMirror(t *testing.T) {
	if testing.Short() {
		t.Skip("builds etcdctl")
	}
	bin := buildEtcdctl(t)
	src, srcEPs := fixedEtcdCluster(t, 1)
	dst, dstEPs := fixedEtcdCluster(t, 1)
	src.WaitLeader(t, 10*time.Second)
	dst.WaitLeader(t, 10*time.Second)
	on := func(eps []string) *transcript { return &transcript{t: t, bin: bin, eps: eps} }
	srcCtl, dstCtl := on(srcEPs), on(dstEPs)
	// More keys than make-mirror's page of 1,000, and one outside the
	// prefix that must stay behind.
	const base = 1200
	var txn strings.Builder
	for i := range base {
		fmt.Fprintf(&txn, "put app/k%04d v%d\n", i, i)
		if (i+1)%100 == 0 { // a transaction holds at most 128 operations
			if out, stderr, code := srcCtl.exec("\n"+txn.String()+"\n\n", "txn", "-i"); code != 0 {
				t.Fatalf("fill: %s %s", out, stderr)
			}
			txn.Reset()
		}
	}
	if _, stderr, code := srcCtl.exec("", "put", "other/x", "1"); code != 0 {
		t.Fatal(stderr)
	}
	count := func(tr *transcript, prefix string) string {
		out, _, _ := tr.exec("", "get", prefix, "--prefix", "--count-only", "--write-out=fields")
		for line := range strings.SplitSeq(out, "\n") {
			if v, ok := strings.CutPrefix(line, `"Count" : `); ok {
				return v
			}
		}
		return "?"
	}
	if got := count(srcCtl, "app/"); got != fmt.Sprint(base) {
		t.Fatalf("source holds %s keys under app/, want %d", got, base)
	}

	mirror := exec.Command(bin, "--endpoints="+strings.Join(srcEPs, ","), "make-mirror", "--prefix=app/", strings.Join(dstEPs, ","))
	var out lockedBuffer
	mirror.Stdout, mirror.Stderr = &out, &out
	if err := mirror.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = mirror.Process.Kill()
		_ = mirror.Wait()
	})
	testwait.For(t, 60*time.Second, fmt.Sprintf("the base copied (make-mirror printed %q)", out.String()), func() bool {
		return count(dstCtl, "app/") == fmt.Sprint(base)
	})
	// Changes after the base follow: a put, an overwrite, a delete.
	for _, args := range [][]string{{"put", "app/new", "n"}, {"put", "app/k0001", "changed"}, {"del", "app/k0002"}} {
		if _, stderr, code := srcCtl.exec("", args...); code != 0 {
			t.Fatalf("%q: %s", args, stderr)
		}
	}
	get := func(key string) string {
		v, _, _ := dstCtl.exec("", "get", key, "--print-value-only")
		return strings.TrimSpace(v)
	}
	testwait.For(t, 30*time.Second, fmt.Sprintf("the changes mirrored (make-mirror printed %q)", out.String()), func() bool {
		return get("app/new") == "n" && get("app/k0001") == "changed" && get("app/k0002") == "" && count(dstCtl, "app/") == fmt.Sprint(base)
	})
	if got := count(dstCtl, "other/"); got != "0" {
		t.Errorf("the destination holds %s keys outside the prefix, want 0", got)
	}
	if v := get("app/k1199"); v != "v1199" {
		t.Errorf("app/k1199 = %q on the destination, want v1199", v)
	}
}
