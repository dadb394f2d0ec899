package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus/backup"
	"github.com/unrdf/consensus/client"
)

// snapshotCmd is `consensus snapshot save|status|restore`.
func (c *cli) snapshotCmd() *cobra.Command {
	cmd := groupCmd("snapshot", "back up a running cluster, inspect a backup, restore one into a new cluster",
		c.snapshotSaveCmd(), snapshotStatusCmd(c.stdout), snapshotRestoreCmd(c.stdout))
	cmd.Long = `Back up a running cluster's state into a file (save), verify a file and print
what it holds (status), and write the data directory of one member of a NEW
cluster seeded with a file (restore: once per member, with the same file and
--peers, then start each with consensus serve --id ID --data DIR --peers ...).`
	return withGlobalFlags(cmd)
}

// snapshotSaveFlags are the global flags snapshot save takes: where the
// cluster is and how to authenticate to it.
var snapshotSaveFlags = []string{"endpoints", "token", "token-file", "cacert", "cert", "key"}

func (c *cli) snapshotSaveCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "take a backup of a running cluster's state (GET /v1/snapshot) into FILE",
		Long: `Take a backup of a running cluster's state (GET /v1/snapshot, a read: a
read-only token will do) into FILE, from the first of --endpoints that serves
it. The file is verified as it arrives and again from the disk, then renamed
into place: a failure leaves no file. --cacert (or --cert) makes addresses
without a scheme https://; --cert and --key present a client certificate, for
servers started with --client-ca.`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := c.settings()
			if err != nil {
				return prefixUsage("snapshot save", err)
			}
			tlsCfg, err := c.tlsConfig()
			if err != nil {
				return prefixUsage("snapshot save", err)
			}
			if timeout <= 0 {
				return usageErrorf("snapshot save: --timeout %s: want a positive duration", timeout)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return snapshotSave(ctx, args[0], st.endpoints, st.token, tlsCfg, c.stdout)
		},
	}
	// Its own --timeout: a download takes longer than a client command.
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "bound on the whole download")
	return withGlobalFlags(cmd, snapshotSaveFlags...)
}

// snapshotSave downloads a backup into file from the first endpoint that
// serves it.
func snapshotSave(ctx context.Context, file string, endpoints []string, token string, tlsCfg *tls.Config, stdout io.Writer) error {
	hc := &http.Client{}
	scheme := "http"
	if tlsCfg != nil {
		transport := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsCfg}
		defer transport.CloseIdleConnections()
		hc.Transport = transport
		scheme = "https"
	}
	var errs []string
	for _, ep := range endpoints {
		url := ep
		if !strings.Contains(url, "://") {
			url = scheme + "://" + url
		}
		url = strings.TrimSuffix(url, "/") + "/v1/snapshot"
		meta, sum, err := download(ctx, hc, url, token, file)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", ep, err))
			var refused *refusedError
			if errors.As(err, &refused) && refused.final() {
				break // another member would say the same
			}
			continue
		}
		_, err = fmt.Fprintf(stdout, "saved %s from %s: revision %d, %d keys, %d bytes, checksum crc32c:%s\n",
			file, meta.Node, meta.Revision, meta.Keys, sum.Size, sum.ChecksumString())
		return err
	}
	return failuref("snapshot save: %s", strings.Join(errs, "; "))
}

// prefixUsage puts "what: " before the message of a usage error.
func prefixUsage(what string, err error) error {
	var exit *exitError
	if errors.As(err, &exit) {
		return &exitError{code: exit.code, msg: what + ": " + exit.msg}
	}
	return err
}

// refusedError is a non-200 answer of the server.
type refusedError struct {
	status  int
	code    string
	message string
	// https: the port speaks HTTPS and the request was plain HTTP.
	https bool
}

func (e *refusedError) Error() string {
	if e.https {
		return httpsHint
	}
	if e.code == "" {
		return fmt.Sprintf("HTTP %d", e.status)
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.status, e.code, e.message)
}

// final reports whether every member would refuse alike (auth, or
// HTTPS asked of a plain-HTTP request).
func (e *refusedError) final() bool {
	return e.status == http.StatusUnauthorized || e.status == http.StatusForbidden || e.https
}

// download fetches a backup from url into file: into file.tmp, verified
// as it arrives and again from the disk, synced, renamed into place, the
// directory synced. A failure leaves neither file.tmp nor a new file.
func download(ctx context.Context, hc *http.Client, url, token, file string) (backup.Metadata, backup.Summary, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return backup.Metadata{}, backup.Summary{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return backup.Metadata{}, backup.Summary{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(raw, &body)
		return backup.Metadata{}, backup.Summary{}, &refusedError{status: resp.StatusCode, code: body.Error.Code,
			message: body.Error.Message, https: client.IsHTTPSAnswer(resp.StatusCode, raw)}
	}
	tmp := file + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return backup.Metadata{}, backup.Summary{}, err
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// Verify what arrives while it is written: everything read from the
	// body goes to the file.
	if _, _, err := backup.Verify(io.TeeReader(resp.Body, f)); err != nil {
		return backup.Metadata{}, backup.Summary{}, err
	}
	if err := f.Sync(); err != nil {
		return backup.Metadata{}, backup.Summary{}, err
	}
	if err := f.Close(); err != nil {
		return backup.Metadata{}, backup.Summary{}, err
	}
	meta, sum, err := verifyFile(tmp)
	if err != nil {
		return backup.Metadata{}, backup.Summary{}, fmt.Errorf("the file written: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return backup.Metadata{}, backup.Summary{}, err
	}
	done = true
	if err := syncParent(file); err != nil {
		return backup.Metadata{}, backup.Summary{}, err
	}
	return meta, sum, nil
}

func verifyFile(name string) (backup.Metadata, backup.Summary, error) {
	f, err := os.Open(name)
	if err != nil {
		return backup.Metadata{}, backup.Summary{}, err
	}
	defer f.Close()
	r, err := unwrapBackup(f)
	if err != nil {
		return backup.Metadata{}, backup.Summary{}, err
	}
	return backup.Verify(r)
}

// unwrapBackup returns the backup f holds, out of etcd's snapshot envelope
// if `etcdctl snapshot save` wrote it (backup.Unwrap).
func unwrapBackup(f *os.File) (*io.SectionReader, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return backup.Unwrap(f, fi.Size())
}

func syncParent(file string) error {
	d, err := os.Open(filepath.Dir(file))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func snapshotStatusCmd(stdout io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status FILE",
		Short: "verify FILE and print what it holds",
		Args:  exactArgs("FILE"),
		RunE: func(_ *cobra.Command, args []string) error {
			file := args[0]
			meta, sum, err := verifyFile(file)
			if err != nil {
				return failuref("snapshot status: %s: %v", file, err)
			}
			if asJSON {
				out := struct {
					File     string          `json:"file"`
					Version  int             `json:"version"`
					Size     int64           `json:"size"`
					Checksum string          `json:"checksum"`
					Metadata backup.Metadata `json:"metadata"`
				}{file, backup.Version, sum.Size, sum.ChecksumString(), meta}
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "file:          %s (verified)\n", file)
			fmt.Fprintf(&b, "format:        version %d, state %s\n", backup.Version, meta.StateFormat)
			fmt.Fprintf(&b, "size:          %d bytes\n", sum.Size)
			fmt.Fprintf(&b, "checksum:      crc32c:%s\n", sum.ChecksumString())
			fmt.Fprintf(&b, "revision:      %d\n", meta.Revision)
			fmt.Fprintf(&b, "keys:          %d\n", meta.Keys)
			fmt.Fprintf(&b, "applied index: %d\n", meta.AppliedIndex)
			fmt.Fprintf(&b, "raft term:     %d (commit index %d)\n", meta.RaftTerm, meta.CommitIndex)
			fmt.Fprintf(&b, "cluster:       %x\n", meta.ClusterID)
			fmt.Fprintf(&b, "taken on:      %s\n", meta.Node)
			fmt.Fprintf(&b, "created:       %s\n", meta.Created.Format(time.RFC3339))
			_, err = io.WriteString(stdout, b.String())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the metadata as JSON")
	return withGlobalFlags(cmd)
}

func snapshotRestoreCmd(stdout io.Writer) *cobra.Command {
	var dataDir, id, peers string
	cmd := &cobra.Command{
		Use:   "restore FILE --data DIR --id ID --peers id=host:port,...",
		Short: "write the data directory of member ID of a NEW cluster seeded with FILE",
		Long: `Write the data directory of member ID of a NEW cluster seeded with FILE. Run it
once per member with the same FILE and --peers, then start each with
consensus serve --id ID --data DIR --peers (the same) --listen ... --http ...`,
		Args: exactArgs("FILE"),
		RunE: func(_ *cobra.Command, args []string) error {
			file := args[0]
			if dataDir == "" || id == "" || peers == "" {
				return usageErrorf("snapshot restore: --data, --id and --peers are required")
			}
			peerMap, err := parsePeers(peers)
			if err != nil {
				return usageErrorf("snapshot restore: %v", err)
			}
			if _, ok := peerMap[id]; !ok {
				return usageErrorf("snapshot restore: --id %q is not in --peers", id)
			}
			f, err := os.Open(file)
			if err != nil {
				return failuref("snapshot restore: %v", err)
			}
			defer f.Close()
			r, err := unwrapBackup(f)
			if err != nil {
				return failuref("snapshot restore: %v", err)
			}
			res, err := backup.Restore(r, backup.RestoreOptions{DataDir: dataDir, ID: id, Peers: peerMap})
			if err != nil {
				return failuref("snapshot restore: %s: %v", file, err)
			}
			names := make([]string, 0, len(peerMap))
			for name := range peerMap {
				names = append(names, name)
			}
			slices.Sort(names)
			_, err = fmt.Fprintf(stdout, "restored revision %d (%d keys, checksum crc32c:%s) into %s for %s of new cluster %x (members %s; raft snapshot index %d, term %d)\n"+
				"start it with: consensus serve --id %s --data %s --peers %s --listen %s --http HOST:PORT\n",
				res.Metadata.Revision, res.Metadata.Keys, res.Summary.ChecksumString(), dataDir, id, res.ClusterID,
				strings.Join(names, ", "), res.Index, res.Term,
				id, dataDir, peers, peerMap[id])
			return err
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "", "data directory to create for the node (must not exist, or be empty)")
	cmd.Flags().StringVar(&id, "id", "", "id of the node the directory is for (one of --peers)")
	cmd.Flags().StringVar(&peers, "peers", "", "the NEW cluster's members, id=host:port,... (the same for every member)")
	return withGlobalFlags(cmd)
}
