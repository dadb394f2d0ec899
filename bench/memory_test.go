package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestParseProcStatus(t *testing.T) {
	status := "Name:\tconsensus\nVmPeak:\t 2000000 kB\nVmHWM:\t   81920 kB\nVmRSS:\t   40960 kB\nRssAnon:\t   10240 kB\nRssFile:\t   30720 kB\nRssShmem:\t       0 kB\nThreads:\t9\n"
	m, err := parseProcStatus([]byte(status))
	if want := (ProcMem{RSS: 40960 << 10, HWM: 81920 << 10, Anon: 10240 << 10, File: 30720 << 10}); err != nil || m != want {
		t.Fatalf("got %+v, %v; want %+v", m, err, want)
	}
	full := "VmRSS:\t2 kB\nVmHWM:\t2 kB\nRssAnon:\t1 kB\n"
	for _, bad := range []string{"Name:\tx\n", full, full + "RssFile:\t1 MB\n", full + "RssFile:\tx kB\n", full + "RssFile:\t-1 kB\n"} {
		if _, err := parseProcStatus([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if m, err := ProcMemory(os.Getpid()); err != nil || m.RSS <= 0 || m.HWM < m.RSS || m.Anon <= 0 || m.File <= 0 {
		t.Errorf("this process: %+v, %v", m, err)
	}
}

func TestMemoryTable(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]int{"a": 1000, "sub/b": 24} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got := DirSize(dir); got != 1024 {
		t.Fatalf("DirSize = %d, want 1024", got)
	}
	var b bytes.Buffer
	WriteMemoryHeader(&b)
	WriteMemoryRow(&b, NodeMemory{Node: "e1", Keys: 1000, RSSBefore: 20 << 20, RSSAfter: 30 << 20, AnonAfter: 12 << 20, FileAfter: 18 << 20, HWM: 31 << 20, DataBytes: 5 << 20})
	WriteMemoryRow(&b, NodeMemory{Node: "n2", RSSBefore: 20 << 20, RSSAfter: 20 << 20, AnonAfter: 5 << 20, FileAfter: 15 << 20, HWM: 20 << 20})
	want := "" +
		"node    rss before    rss after   anon after   file after     rss peak     data dir        rss/key\n" +
		"e1        20.0 MiB     30.0 MiB     12.0 MiB     18.0 MiB     31.0 MiB      5.0 MiB        10486 B\n" +
		"n2        20.0 MiB     20.0 MiB      5.0 MiB     15.0 MiB     20.0 MiB            -              -\n"
	if b.String() != want {
		t.Fatalf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}
