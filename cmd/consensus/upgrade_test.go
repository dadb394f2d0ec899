package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// upgradeDir holds the fixtures of earlier releases and PREVIOUS, the
// commit of the release before this one (testdata/upgrade/README.md).
const upgradeDir = "../../testdata/upgrade"

// TestUpgradeFixtures opens what each earlier release wrote with the
// current code: its data directory, started with `consensus serve`, and
// its backup, restored with `consensus snapshot restore` and started,
// must each answer every read of the release's expected.txt as that
// release did.
func TestUpgradeFixtures(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	releases, err := filepath.Glob(filepath.Join(upgradeDir, "*", "fixtures.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if len(releases) == 0 {
		t.Fatalf("no fixtures under %s (testdata/upgrade/README.md)", upgradeDir)
	}
	bin := buildBinary(t)
	for _, archive := range releases {
		dir := filepath.Dir(archive)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			reads := readExpected(t, filepath.Join(dir, "expected.txt"))
			root := t.TempDir()
			extractTarGz(t, archive, root)

			t.Run("data", func(t *testing.T) {
				addr := serveOne(t, bin, filepath.Join(root, "data"))
				checkReads(t, addr, reads, nil)
			})
			t.Run("backup", func(t *testing.T) {
				backupFile := filepath.Join(root, "backup.cnsbak")
				if out, err := exec.Command(bin, "snapshot", "status", backupFile).CombinedOutput(); err != nil {
					t.Fatalf("snapshot status: %v\n%s", err, out)
				}
				data := filepath.Join(t.TempDir(), "restored")
				peer := freeAddr(t)
				restore := exec.Command(bin, "snapshot", "restore", backupFile, "--data", data, "--id", "n1", "--peers", "n1="+peer)
				if out, err := restore.CombinedOutput(); err != nil {
					t.Fatalf("snapshot restore: %v\n%s", err, out)
				}
				addr := serveOnePeer(t, bin, data, peer)
				// A restored cluster is a new one: its own id and addresses.
				checkReads(t, addr, reads, []string{"clusterId", "peerAddr", "httpAddr"})
			})
		})
	}
}

// expectedRead is one read of expected.txt: a path and the answer's JSON.
type expectedRead struct {
	path string
	want any
}

// readExpected parses expected.txt: "# comment" lines, then pairs of a
// "GET <path>" line and a line of JSON.
func readExpected(t *testing.T, file string) []expectedRead {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var reads []expectedRead
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		path, ok := strings.CutPrefix(line, "GET ")
		if !ok || !sc.Scan() {
			t.Fatalf("%s: want GET <path> and a line of JSON, got %q", file, line)
		}
		want, err := decodeJSONNumbers(sc.Bytes())
		if err != nil {
			t.Fatalf("%s: %s: %v", file, path, err)
		}
		reads = append(reads, expectedRead{path: path, want: want})
	}
	if err := sc.Err(); err != nil || len(reads) == 0 {
		t.Fatalf("%s: %d reads, error %v", file, len(reads), err)
	}
	return reads
}

func decodeJSONNumbers(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// checkReads makes each read on the node at addr and compares the answer
// with the expected one (jsonCovers), ignoring remainingMs (a lease's
// countdown, which started again with the node) and the keys in ignore.
func checkReads(t *testing.T, addr string, reads []expectedRead, ignore []string) {
	t.Helper()
	ignore = append(ignore, "remainingMs")
	c := http.Client{Timeout: 5 * time.Second}
	for _, r := range reads {
		resp, err := c.Get("http://" + addr + r.path)
		if err != nil {
			t.Errorf("GET %s: %v", r.path, err)
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d %s (%v)", r.path, resp.StatusCode, body, err)
			continue
		}
		got, err := decodeJSONNumbers(body)
		if err != nil {
			t.Errorf("GET %s: %v: %s", r.path, err, body)
			continue
		}
		if diff := jsonCovers(r.want, got, ignore, "$"); diff != "" {
			t.Errorf("GET %s: %s\n got: %s", r.path, diff, body)
		}
	}
}

// jsonCovers returns "" if got holds everything want holds: every key of
// an object (but those in ignore) with a covering value, arrays of the
// same length element by element, equal scalars. got may have keys want
// lacks: a newer release may answer with more fields. Otherwise it says
// where they differ.
func jsonCovers(want, got any, ignore []string, at string) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: want an object, got %v", at, got)
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if slices.Contains(ignore, k) {
				continue
			}
			gv, ok := g[k]
			if !ok {
				return fmt.Sprintf("%s.%s: missing", at, k)
			}
			if d := jsonCovers(w[k], gv, ignore, at+"."+k); d != "" {
				return d
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: want %d elements, got %v", at, len(w), got)
		}
		for i := range w {
			if d := jsonCovers(w[i], g[i], ignore, fmt.Sprintf("%s[%d]", at, i)); d != "" {
				return d
			}
		}
		return ""
	default:
		if want != got {
			return fmt.Sprintf("%s: want %v, got %v", at, want, got)
		}
		return ""
	}
}

// serveOne runs `consensus serve` as the single member n1 on the data
// directory data (on free loopback ports) until the test ends, and
// returns its HTTP address once it is ready.
func serveOne(t *testing.T, bin, data string) string {
	return serveOnePeer(t, bin, data, freeAddr(t))
}

func serveOnePeer(t *testing.T, bin, data, peer string) string {
	t.Helper()
	addr := freeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "serve", "--id", "n1", "--listen", peer, "--http", addr,
		"--peers", "n1="+peer, "--data", data)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("serve exited with %v", err)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("serve did not stop within 20s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("---- log of serve on %s ----\n%s", data, logs.String())
		}
	})
	c := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("serve exited before it was ready: %v\n%s", err, logs.String())
		default:
		}
		if resp, err := c.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("serve on %s not ready within 20s", data)
	return ""
}

// extractTarGz unpacks the regular files and directories of a .tar.gz
// into dir, refusing names that would leave it.
func extractTarGz(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := extractTar(zr, dir); err != nil {
		t.Fatalf("%s: %v", archive, err)
	}
}

func extractTar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("entry %q leaves the directory", h.Name)
		}
		path := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return err
			}
			out, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

// TestJSONCovers: the comparison TestUpgradeFixtures makes lets a newer
// release add fields, and nothing else.
func TestJSONCovers(t *testing.T) {
	cases := []struct {
		want, got string
		ok        bool
	}{
		{`{"a":1,"b":[1,"x",null]}`, `{"a":1,"b":[1,"x",null]}`, true},
		{`{"a":1}`, `{"a":1,"new":true}`, true},
		{`{"a":1,"remainingMs":5}`, `{"a":1,"remainingMs":9}`, true},
		{`{"a":1}`, `{"b":1}`, false},
		{`{"a":1}`, `{"a":1.0}`, false},
		{`{"a":"1"}`, `{"a":1}`, false},
		{`{"a":[1,2]}`, `{"a":[1]}`, false},
		{`{"a":[{"k":1}]}`, `{"a":[{"k":2}]}`, false},
		{`{"a":{"b":true}}`, `{"a":[]}`, false},
		{`null`, `{}`, false},
	}
	for _, c := range cases {
		want, err := decodeJSONNumbers([]byte(c.want))
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeJSONNumbers([]byte(c.got))
		if err != nil {
			t.Fatal(err)
		}
		if d := jsonCovers(want, got, []string{"remainingMs"}, "$"); (d == "") != c.ok {
			t.Errorf("jsonCovers(%s, %s) = %q, want ok %v", c.want, c.got, d, c.ok)
		}
	}
}
