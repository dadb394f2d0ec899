package etcdapi_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/kv"
)

// binaryKeys are keys as etcd's benchmark tool writes them (varints in a
// zeroed 8-byte buffer) and others that are not UTF-8 or hold control
// characters; in byte order.
var binaryKeys = []string{
	"\x00\x00\x00\x00\x00\x00\x00\x00",
	"\x00\x02\x00\x00\x00\x00\x00\x00",
	"\x00\xff",
	"\x01",
	"k\x00\n",
	"\xc3(",
	"\xff",
	"\xff\xff\x00",
}

// TestBinaryKeys checks that etcd's keys are any bytes through its API:
// put (with a lease), get, range with range_end, a transaction comparing
// and writing a binary key, watch, lease keys, delete range.
func TestBinaryKeys(t *testing.T) {
	c, eps := startCluster(t, 3)
	follower := c.Others(c.WaitLeader(t, 10*time.Second))[0]
	cli := newClient(t, eps[follower])
	ctx := ctxT(t)

	g, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	first, err := cli.Put(ctx, binaryKeys[0], "v0", clientv3.WithLease(g.ID))
	if err != nil {
		t.Fatalf("put %q: %v", binaryKeys[0], err)
	}
	nul := cli.Watch(ctx, "\x00", clientv3.WithPrefix(), clientv3.WithRev(first.Header.Revision))
	for i, k := range binaryKeys[1:] {
		if _, err := cli.Put(ctx, k, fmt.Sprintf("v%d", i+1)); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	all, err := cli.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil || len(all.Kvs) != len(binaryKeys) {
		t.Fatalf("get from \\x00: %v, %v", all, err)
	}
	for i, kv := range all.Kvs {
		if string(kv.Key) != binaryKeys[i] || string(kv.Value) != fmt.Sprintf("v%d", i) {
			t.Fatalf("key %d: %q = %q, want %q = v%d (byte order)", i, kv.Key, kv.Value, binaryKeys[i], i)
		}
	}
	// [\x00, \x01): the keys starting with NUL; [\xff, \xff\xff\x01).
	for _, r := range []struct {
		key, end string
		want     []string
	}{
		{"\x00", "\x01", binaryKeys[:3]},
		{"\xff", "\xff\xff\x01", binaryKeys[6:]},
		{"\x00\x02", "\x00\xff", binaryKeys[1:2]},
	} {
		got, err := cli.Get(ctx, r.key, clientv3.WithRange(r.end))
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, kv := range got.Kvs {
			keys = append(keys, string(kv.Key))
		}
		if fmt.Sprintf("%q", keys) != fmt.Sprintf("%q", r.want) {
			t.Fatalf("range [%q, %q) = %q, want %q", r.key, r.end, keys, r.want)
		}
	}
	// A transaction comparing a binary key's value and version, writing
	// another.
	txn, err := cli.Txn(ctx).If(
		clientv3.Compare(clientv3.Value(binaryKeys[6]), "=", "v6"),
		clientv3.Compare(clientv3.Version(binaryKeys[2]), "=", 1),
	).Then(clientv3.OpPut(binaryKeys[5], "txn"), clientv3.OpGet(binaryKeys[0])).Commit()
	if err != nil || !txn.Succeeded {
		t.Fatalf("txn comparing binary keys: %+v, %v", txn, err)
	}
	if kvs := txn.Responses[1].GetResponseRange().Kvs; len(kvs) != 1 || string(kvs[0].Key) != binaryKeys[0] {
		t.Fatalf("txn range of %q: %v", binaryKeys[0], kvs)
	}
	if got, err := cli.Get(ctx, binaryKeys[5]); err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "txn" {
		t.Fatalf("after txn: %v, %v", got, err)
	}
	txn, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(binaryKeys[6]), "=", "other")).Commit()
	if err != nil || txn.Succeeded {
		t.Fatalf("txn with a false compare on %q: %+v, %v", binaryKeys[6], txn, err)
	}
	// The lease lists its binary key.
	ttl, err := cli.TimeToLive(ctx, g.ID, clientv3.WithAttachedKeys())
	if err != nil || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != binaryKeys[0] {
		t.Fatalf("lease keys: %+v, %v", ttl, err)
	}
	// Delete the NUL keys as a range; the watch saw them put and deleted.
	del, err := cli.Delete(ctx, "\x00", clientv3.WithRange("\x01"), clientv3.WithPrevKV())
	if err != nil || del.Deleted != 3 || string(del.PrevKvs[2].Key) != binaryKeys[2] {
		t.Fatalf("delete [\\x00, \\x01): %+v, %v", del, err)
	}
	var got []string
	for len(got) < 6 {
		for _, ev := range next(t, nul).Events {
			got = append(got, fmt.Sprintf("%s %q", ev.Type, ev.Kv.Key))
		}
	}
	var want []string
	for _, typ := range []string{"PUT", "DELETE"} {
		for _, k := range binaryKeys[:3] {
			want = append(want, fmt.Sprintf("%s %q", typ, k))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("watch of prefix \\x00: %s, want %s", got, want)
	}
	if _, err := cli.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
}

// TestBinaryKeysOverHTTPAndWS checks that keys written through etcd's API
// that are not UTF-8 or hold control characters show, byte for byte,
// over every read surface of our own APIs: the HTTP list and get (keys
// as api.AppendKeyJSON writes them), the SSE watch, the lease's keys, and
// the Go client over /v1/ws; that HTTP gets and deletes them by their
// percent-encoded path; and that our own writes still refuse them.
func TestBinaryKeysOverHTTPAndWS(t *testing.T) {
	c, eps := startCluster(t, 3)
	leader := c.WaitLeader(t, 10*time.Second)
	follower := c.Others(leader)[0]
	cli := newClient(t, eps[follower])
	ctx := ctxT(t)
	base := "http://" + c.Servers[follower].HTTPAddr()

	start, err := cli.Get(ctx, "any")
	if err != nil {
		t.Fatal(err)
	}
	// An SSE watch of every key from the next revision on.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("%s/v1/watch?from_revision=%d", base, start.Header.Revision+1), nil)
	if err != nil {
		t.Fatal(err)
	}
	watch, err := http.DefaultClient.Do(req)
	if err != nil || watch.StatusCode != http.StatusOK {
		t.Fatalf("watch: %v %v", watch, err)
	}
	defer watch.Body.Close()
	g, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range binaryKeys {
		var opts []clientv3.OpOption
		if i == 0 {
			opts = append(opts, clientv3.WithLease(g.ID))
		}
		if _, err := cli.Put(ctx, k, fmt.Sprintf("v%d", i), opts...); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}

	// The list, whole and under a binary prefix.
	var page struct {
		Items []api.Item `json:"items"`
	}
	getJSON(t, base+"/v1/kv", &page)
	if got := itemKeys(page.Items); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", binaryKeys) {
		t.Fatalf("HTTP list: %q, want %q", got, binaryKeys)
	}
	getJSON(t, base+"/v1/kv?prefix="+url.QueryEscape("\xff"), &page)
	if got := itemKeys(page.Items); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", binaryKeys[6:]) {
		t.Fatalf("HTTP list of prefix \\xff: %q", got)
	}
	// Pages: the next key is a binary key, taken back as is.
	var p1 struct {
		Items []api.Item  `json:"items"`
		Next  api.JSONKey `json:"next"`
	}
	getJSON(t, base+"/v1/kv?limit=2", &p1)
	if len(p1.Items) != 2 || string(p1.Next) != binaryKeys[2] {
		t.Fatalf("first page: %q next %q", itemKeys(p1.Items), p1.Next)
	}
	getJSON(t, base+"/v1/kv?limit=2&next="+url.QueryEscape(string(p1.Next)), &page)
	if got := itemKeys(page.Items); len(got) != 2 || got[0] != binaryKeys[2] {
		t.Fatalf("second page: %q", got)
	}
	// Each key by its percent-encoded path.
	for i, k := range binaryKeys {
		var it api.Item
		getJSON(t, base+"/v1/kv/"+url.PathEscape(k), &it)
		if it.Key != k || string(kv.EtcdValue(it.Value)) != fmt.Sprintf("v%d", i) {
			t.Fatalf("HTTP get %q: %q = %s", k, it.Key, it.Value)
		}
	}
	// A lease's time to live is the leader's to answer; a follower just
	// started may not know the leader's HTTP address yet (503), so ask it.
	var lease api.Lease
	getJSON(t, fmt.Sprintf("http://%s/v1/leases/%x", c.Servers[leader].HTTPAddr(), g.ID), &lease)
	if len(lease.Keys) != 1 || lease.Keys[0] != binaryKeys[0] {
		t.Fatalf("lease keys over HTTP: %q", lease.Keys)
	}
	// The SSE watch saw every put, keys exact.
	events := bufio.NewScanner(watch.Body)
	var seen []string
	for len(seen) < len(binaryKeys) && events.Scan() {
		data, ok := strings.CutPrefix(events.Text(), "data: ")
		if !ok {
			continue
		}
		var ev api.WatchEventData
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("watch event %s: %v", data, err)
		}
		seen = append(seen, ev.Key)
	}
	if fmt.Sprintf("%q", seen) != fmt.Sprintf("%q", binaryKeys) {
		t.Fatalf("SSE watch: %q, want %q (%v)", seen, binaryKeys, events.Err())
	}

	// The Go client over /v1/ws: get, list, delete.
	wc, err := client.New(client.Config{Endpoints: []string{base}})
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	if it, err := wc.Get(ctx, binaryKeys[2]); err != nil || it.Key != binaryKeys[2] {
		t.Fatalf("ws get %q: %q, %v", binaryKeys[2], it.Key, err)
	}
	var listed []string
	for it, err := range wc.List(ctx, "\x00") {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, it.Key)
	}
	if fmt.Sprintf("%q", listed) != fmt.Sprintf("%q", binaryKeys[:3]) {
		t.Fatalf("ws list of prefix \\x00: %q", listed)
	}
	if _, err := wc.Delete(ctx, binaryKeys[1]); err != nil {
		t.Fatalf("ws delete %q: %v", binaryKeys[1], err)
	}
	// HTTP deletes by path; our own puts refuse such keys.
	del, err := http.NewRequestWithContext(ctx, http.MethodDelete, base+"/v1/kv/"+url.PathEscape(binaryKeys[6]), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := http.DefaultClient.Do(del); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP delete %q: %v %v", binaryKeys[6], resp, err)
	} else {
		resp.Body.Close()
	}
	if got, err := cli.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithKeysOnly()); err != nil || len(got.Kvs) != len(binaryKeys)-2 {
		t.Fatalf("after the deletes: %v, %v", got, err)
	}
	put, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/v1/kv/%FF", strings.NewReader(`1`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(put)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("HTTP put of a binary key: %d, want 400", resp.StatusCode)
	}
	if _, err := wc.Put(ctx, "\x00", []byte(`1`)); !errors.Is(err, api.ErrInvalidKey) {
		t.Fatalf("ws put of a binary key: %v, want ErrInvalidKey", err)
	}
	if _, err := cli.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
}

func itemKeys(items []api.Item) []string {
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = it.Key
	}
	return keys
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s %v", url, resp.StatusCode, b, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %s: %v", url, b, err)
	}
}
