package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus/bench"
)

func TestParseScaleFlags(t *testing.T) {
	f, err := parseScaleFlags([]string{"--etcd", "/bin/etcd", "--keys", "1000", "--port", "40000", "--json"}, &bytes.Buffer{})
	if err != nil || f.etcdBin != "/bin/etcd" || f.keys != 1000 || f.port != 40000 || !f.json || f.valueSize != 100 {
		t.Fatalf("%+v %v", f, err)
	}
	for name, args := range map[string][]string{
		"no binary":        {"--keys", "10"},
		"no keys":          {"--etcd", "e", "--keys", "0"},
		"too many keys":    {"--etcd", "e", "--keys", "10000001"},
		"value too small":  {"--etcd", "e", "--value-size", "1"},
		"ports beyond":     {"--etcd", "e", "--port", "65530"},
		"stray argument":   {"--etcd", "e", "now"},
		"unknown flag":     {"--etcd", "e", "--endpoints", "127.0.0.1:2379"},
		"port not numeric": {"--etcd", "e", "--port", "x"},
	} {
		if _, err := parseScaleFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%s: %q accepted", name, args)
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"scale", "--keys", "10"}, &bytes.Buffer{}, &stderr); code != 2 || !strings.HasPrefix(stderr.String(), "etcd scale: --etcd") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

// TestScaleCompare: the table of etcd scale's report and ours (inside
// consensus bench's report), and clear errors for files that are not.
func TestScaleCompare(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	etcd := write("etcd.json", bench.Scale{System: "etcd", Version: "3.7.3", Keys: 10, ValueSize: 100, Fill: time.Second})
	ours := write("ours.json", map[string]any{"system": "consensus", "scale": bench.Scale{System: "consensus", Keys: 10, ValueSize: 100, Fill: 3 * time.Second}})
	other := write("other.json", map[string]any{"scale": bench.Scale{System: "consensus", Keys: 20, ValueSize: 100}})

	var stdout, stderr bytes.Buffer
	if code := run([]string{"scale-compare", "--etcd", etcd, "--ours", ours}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "write the keys, all members applied                 1.00s          3.00s      3.00x\n") {
		t.Errorf("table:\n%s", stdout.String())
	}
	for name, tc := range map[string]struct {
		args []string
		code int
		want string
	}{
		"neither":         {nil, 2, "--etcd or --ours"},
		"ours as etcd":    {[]string{"--etcd", ours}, 1, "not a report of etcd scale"},
		"etcd as ours":    {[]string{"--ours", etcd}, 1, "not a report of consensus bench --scale-keys"},
		"other key count": {[]string{"--etcd", etcd, "--ours", other}, 1, "10 keys of 100 B, ours of 20 keys"},
		"no file":         {[]string{"--etcd", filepath.Join(dir, "none.json")}, 1, "no such file"},
	} {
		stdout.Reset()
		stderr.Reset()
		code := run(append([]string{"scale-compare"}, tc.args...), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s: exit %d, stderr %q", name, code, stderr.String())
		}
	}
}
