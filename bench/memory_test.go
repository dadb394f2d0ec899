package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestParseProcStatus(t *testing.T) {
	status := "Name:\tconsensus\nVmPeak:\t 2000000 kB\nVmHWM:\t   81920 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n"
	rss, hwm, err := parseProcStatus([]byte(status))
	if err != nil || rss != 40960<<10 || hwm != 81920<<10 {
		t.Fatalf("rss %d hwm %d err %v", rss, hwm, err)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\nVmHWM:\t1 kB\n", "VmRSS:\tx kB\nVmHWM:\t1 kB\n"} {
		if _, _, err := parseProcStatus([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if rss, hwm, err := ProcMemory(os.Getpid()); err != nil || rss <= 0 || hwm < rss {
		t.Errorf("this process: rss %d hwm %d err %v", rss, hwm, err)
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
	WriteMemoryRow(&b, NodeMemory{Node: "e1", Keys: 1000, RSSBefore: 20 << 20, RSSAfter: 30 << 20, HWM: 31 << 20, DataBytes: 5 << 20})
	WriteMemoryRow(&b, NodeMemory{Node: "n2", RSSBefore: 20 << 20, RSSAfter: 20 << 20, HWM: 20 << 20})
	want := "" +
		"node    rss before    rss after     rss peak     data dir        rss/key\n" +
		"e1        20.0 MiB     30.0 MiB     31.0 MiB      5.0 MiB        10486 B\n" +
		"n2        20.0 MiB     20.0 MiB     20.0 MiB            -              -\n"
	if b.String() != want {
		t.Fatalf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}
