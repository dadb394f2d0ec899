package main

import (
	"os"
	"time"

	"github.com/unrdf/consensus"
	"go.etcd.io/raft/v3/raftpb"
)

// stallSaveEnv names a failpoint for tests on real processes: when it is
// set to a file's path, every storage write of the node waits while that
// file exists, as if its disk hung on fsync. It is for tests only
// (docs/TESTING.md); serve logs a warning when it is set.
const stallSaveEnv = "CONSENSUS_FAILPOINT_STALL_SAVE"

// stallingStorage holds Save while the file at path exists.
type stallingStorage struct {
	consensus.LogStorage
	path string
}

func (s stallingStorage) Save(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot) error {
	for {
		if _, err := os.Stat(s.path); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s.LogStorage.Save(hs, ents, snap)
}
