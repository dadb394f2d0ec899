package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeMarks writes the marks of process name to dir, each mark given as
// "<microseconds> <index> <stage>".
func writeMarks(t *testing.T, dir, name string, marks ...string) {
	t.Helper()
	const base = 1_000_000_000
	var b strings.Builder
	for _, m := range marks {
		var at int64
		var idx uint64
		var stage string
		if _, err := fmt.Sscanf(m, "%d %d %s", &at, &idx, &stage); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%d %s %d %s\n", base+at*1000, name, idx, stage)
	}
	if err := os.WriteFile(filepath.Join(dir, name+"-1.txt"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSplitOneWrite feeds the marks of one write (entry 7) from the
// client through a leader and two followers, at known times, over /v1/ws
// and over HTTP, and checks every stage's length.
func TestSplitOneWrite(t *testing.T) {
	followers := func(dir string) {
		// n2 acknowledges first, so the report follows it.
		writeMarks(t, dir, "n2",
			"135 0 peer_frame", "140 7 recv_app", "155 7 ready", "157 7 saving", "500 7 saved", "503 7 send_resp", "510 0 peer_write")
		writeMarks(t, dir, "n3",
			"150 0 peer_frame", "155 7 recv_app", "170 7 ready", "172 7 saving", "700 7 saved", "705 7 send_resp", "710 0 peer_write")
	}
	client := func(dir string) {
		writeMarks(t, dir, "client", "-50 0 client_call", "-40 0 client_write", "760 0 client_read", "775 0 client_done")
	}
	tests := []struct {
		name   string
		leader []string
		client bool
		want   map[string]int64 // microseconds, by row
	}{
		{
			name: "ws",
			leader: []string{"0 0 ws_frame", "10 0 ws_handle", "22 0 proposed", "30 7 ready", "32 7 send_app", "35 0 peer_write", "36 7 saving",
				"400 7 saved", "600 0 peer_frame", "604 7 recv_resp", "630 7 commit_ready", "640 7 applying",
				"650 7 applied", "655 7 woken", "660 0 ws_handled", "690 0 ws_write"},
			client: true,
			want: map[string]int64{
				"client: call -> request written":                      10,
				"network: client request -> leader read it":            40,
				"leader: ws frame read -> request handled":             10,
				"leader: handler -> proposal stepped into raft":        12,
				"leader: stepped -> raft Ready with the entry":         8,
				"leader: Ready -> appends handed to transport":         2,
				"leader: transport -> frame written":                   3,
				"network: leader frame -> follower frame read":         100,
				"follower: frame read -> append stepped":               5,
				"follower: stepped -> raft Ready":                      15,
				"follower: Ready -> save begins":                       2,
				"follower: save (fsync)":                               343,
				"follower: saved -> ack handed to transport":           3,
				"follower: transport -> frame written":                 7,
				"network: follower frame -> leader frame read":         90,
				"leader: frame read -> ack stepped":                    4,
				"leader: Ready -> own save begins":                     6,
				"leader: own save (fsync), in parallel":                364,
				"leader: later of ack and own save -> commit Ready":    26,
				"leader: commit Ready -> apply begins":                 10,
				"leader: apply":                                        10,
				"leader: applied -> proposer woken":                    5,
				"leader: proposer woken -> answer queued":              5,
				"leader: answer queued -> ws frame written":            30,
				"network: leader answer -> client read it":             70,
				"client: answer read -> call returns":                  15,
				"total on the leader (request read -> answer written)": 690,
				"total at the client (call -> return)":                 825,
				// 825 - (40 + 100 + 90 + 70) - 343
				"the rest: client total - 4 hops - follower fsync": 182,
			},
		},
		{
			name: "http without the client's marks",
			leader: []string{"10 0 http_handle", "22 0 proposed", "30 7 ready", "32 7 send_app", "35 0 peer_write", "36 7 saving",
				"620 7 saved", "600 0 peer_frame", "604 7 recv_resp", "630 7 commit_ready", "640 7 applying",
				"650 7 applied", "655 7 woken", "660 0 http_handled"},
			want: map[string]int64{
				"leader: handler -> proposal stepped into raft":        12,
				"leader: stepped -> raft Ready with the entry":         8,
				"leader: Ready -> appends handed to transport":         2,
				"leader: transport -> frame written":                   3,
				"network: leader frame -> follower frame read":         100,
				"follower: frame read -> append stepped":               5,
				"follower: stepped -> raft Ready":                      15,
				"follower: Ready -> save begins":                       2,
				"follower: save (fsync)":                               343,
				"follower: saved -> ack handed to transport":           3,
				"follower: transport -> frame written":                 7,
				"network: follower frame -> leader frame read":         90,
				"leader: frame read -> ack stepped":                    4,
				"leader: Ready -> own save begins":                     6,
				"leader: own save (fsync), in parallel":                584,
				"leader: later of ack and own save -> commit Ready":    10, // after the own save
				"leader: commit Ready -> apply begins":                 10,
				"leader: apply":                                        10,
				"leader: applied -> proposer woken":                    5,
				"leader: proposer woken -> answer queued":              5,
				"total on the leader (request read -> answer written)": 650,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeMarks(t, dir, "n1", tt.leader...)
			followers(dir)
			if tt.client {
				client(dir)
			}
			nodes, err := load(dir)
			if err != nil {
				t.Fatal(err)
			}
			var leader, cl *node
			var fs []*node
			for _, n := range nodes {
				switch n.name {
				case "n1":
					leader = n
				case clientName:
					cl = n
				default:
					fs = append(fs, n)
				}
			}
			rows, _ := split(leader, fs, cl, tt.name == "ws")
			if len(rows) != len(tt.want) {
				t.Errorf("%d rows, want %d", len(rows), len(tt.want))
			}
			for _, r := range rows {
				want, ok := tt.want[r.name]
				if !ok {
					t.Errorf("unexpected row %q", r.name)
					continue
				}
				if len(r.values) != 1 || r.values[0] != want*1000 {
					t.Errorf("%s: %v ns, want %d us", r.name, r.values, want)
				}
			}
		})
	}
}

// TestReportPicksLeaderAndCritical checks the table's heading: the
// leader is the node that served the requests, and the share of writes
// whose commit waited on the leader's own save.
func TestReportPicksLeaderAndCritical(t *testing.T) {
	dir := t.TempDir()
	writeMarks(t, dir, "n2", "135 0 peer_frame", "140 7 recv_app", "155 7 ready", "157 7 saving", "500 7 saved", "503 7 send_resp", "510 0 peer_write")
	writeMarks(t, dir, "n1", "10 0 http_handle", "22 0 proposed", "30 7 ready", "32 7 send_app", "35 0 peer_write", "36 7 saving",
		"620 7 saved", "600 0 peer_frame", "604 7 recv_resp", "630 7 commit_ready", "640 7 applying",
		"650 7 applied", "655 7 woken", "660 0 http_handled")
	nodes, err := load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := report(&b, nodes); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "leader: own save (fsync), in parallel                       584.0us    584.0us    584.0us") {
		t.Errorf("no p50, p90 and mean of the leader's save in\n%s", b.String())
	}
	if head := strings.SplitN(b.String(), "\n", 2)[0]; !strings.Contains(head, "leader n1, http, 1 writes") || !strings.Contains(head, "in 100%") {
		t.Errorf("heading %q", head)
	}
}

func TestLoadRefusesGarbage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "n1-1.txt"), []byte("12 n1 x ready\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := load(dir); err == nil {
		t.Fatal("a bad index was accepted")
	}
}
