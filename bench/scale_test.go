package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestWriteScale: one column per system, the second over the first in a
// ratio column, "-" for a figure one side did not measure.
func TestWriteScale(t *testing.T) {
	etcd := &Scale{System: "etcd", Version: "3.7.3", Keys: 1000, ValueSize: 100, LoadStart: "1.00", LoadEnd: "2.00",
		Fill: 2 * time.Second, Memory: []NodeMemory{{RSSAfter: 40 << 20, DataBytes: 100 << 20}, {RSSAfter: 50 << 20, DataBytes: 90 << 20}},
		SnapshotBytes: 2 << 20, Snapshot: 20 * time.Millisecond, RestartNode: 100 * time.Millisecond,
		RestartCluster: 400 * time.Millisecond, CatchUp: 200 * time.Millisecond, CatchUpRSS: 30 << 20}
	ours := &Scale{System: "consensus", Version: "dev", Keys: 1000, ValueSize: 100, LoadStart: "2.00", LoadEnd: "3.00",
		Fill: time.Second, Memory: []NodeMemory{{RSSAfter: 60 << 20, DataBytes: 10 << 20}},
		SnapshotBytes: 1 << 20, Snapshot: 10 * time.Millisecond, RestartNode: 50 * time.Millisecond,
		RestartCluster: 800 * time.Millisecond}
	var b bytes.Buffer
	WriteScale(&b, etcd, ours)
	out := b.String()
	for _, want := range []string{
		"1000 keys of 100 B, 2 members\n",
		"                                               etcd 3.7.3  consensus dev consensus/etcd\n",
		"write the keys, all members applied                 2.00s          1.00s      0.50x\n",
		"RSS per member, largest                          50.0 MiB       60.0 MiB      1.20x\n",
		"data directory per member, largest              100.0 MiB       10.0 MiB      0.10x\n",
		"restart the whole stopped cluster                   400ms          800ms      2.00x\n",
		"new member catches up                               200ms              -          -\n",
		"1-minute load, start-end                        1.00-2.00      2.00-3.00\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}

	b.Reset()
	WriteScale(&b, nil, ours)
	if strings.Contains(b.String(), "etcd") || strings.Contains(b.String(), "x\n") {
		t.Errorf("one system: a column or ratio of the other:\n%s", b.String())
	}
	b.Reset()
	WriteScale(&b, nil, nil)
	if b.Len() != 0 {
		t.Errorf("no system: %q", b.String())
	}
}
