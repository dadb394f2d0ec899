package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/unrdf/consensus/backup"
)

const snapshotUsage = `Usage:
  consensus snapshot save FILE [--endpoints host:port,...] [--token T] [--cacert ca.pem]
      take a backup of a running cluster's state (GET /v1/snapshot) into FILE
  consensus snapshot status FILE [--json]
      verify FILE and print what it holds
  consensus snapshot restore FILE --data DIR --id ID --peers id=host:port,...
      write the data directory of member ID of a NEW cluster seeded with FILE;
      run once per member with the same FILE and --peers, then start each with
      consensus serve --id ID --data DIR --peers (the same) --listen ... --http ...
`

// snapshotCmd runs `consensus snapshot save|status|restore`. It is
// self-contained: args are what follows "snapshot".
func snapshotCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, snapshotUsage)
		return 2
	}
	switch args[0] {
	case "save":
		return snapshotSave(args[1:], stdout, stderr)
	case "status":
		return snapshotStatus(args[1:], stdout, stderr)
	case "restore":
		return snapshotRestore(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, snapshotUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "snapshot: unknown command %q\n\n%s", args[0], snapshotUsage)
		return 2
	}
}

// parseWithFile parses fs from args, where flags may come before or after
// the one positional argument, the file, which it returns. ok false means
// return code.
func parseWithFile(fs *flag.FlagSet, args []string, stderr io.Writer) (file string, code int, ok bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return "", 0, false
			}
			return "", 2, false
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "snapshot %s: want exactly one FILE, got %d arguments\n", fs.Name(), len(pos))
		return "", 2, false
	}
	return pos[0], 0, true
}

// envOr returns the environment variable name, or def when it is unset or
// empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func snapshotSave(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("save", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoints := fs.String("endpoints", envOr(envEndpoints, defaultEndpoints), "HTTP addresses (host:port or URL,...) of cluster members, tried in turn (env "+envEndpoints+")")
	token := fs.String("token", os.Getenv(envToken), "bearer token, a read-only one will do (env "+envToken+")")
	caFile := fs.String("cacert", "", "CA certificate (PEM) to verify the server's; implies https for addresses without a scheme")
	timeout := fs.Duration("timeout", 10*time.Minute, "bound on the whole download")
	file, code, ok := parseWithFile(fs, args, stderr)
	if !ok {
		return code
	}
	client := &http.Client{}
	scheme := "http"
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintln(stderr, "snapshot save: --cacert:", err)
			return 2
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "snapshot save: --cacert: no PEM certificate in %s\n", *caFile)
			return 2
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		scheme = "https"
	}
	eps := splitList(*endpoints)
	if len(eps) == 0 {
		fmt.Fprintln(stderr, "snapshot save: --endpoints names no address")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var errs []error
	for _, ep := range eps {
		url := ep
		if !strings.Contains(url, "://") {
			url = scheme + "://" + url
		}
		url = strings.TrimSuffix(url, "/") + "/v1/snapshot"
		meta, sum, err := download(ctx, client, url, *token, file)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
			var refused *refusedError
			if errors.As(err, &refused) && refused.final() {
				break // another member would say the same
			}
			continue
		}
		fmt.Fprintf(stdout, "saved %s from %s: revision %d, %d keys, %d bytes, checksum crc32c:%s\n",
			file, meta.Node, meta.Revision, meta.Keys, sum.Size, sum.ChecksumString())
		return 0
	}
	fmt.Fprintln(stderr, "snapshot save:", errors.Join(errs...))
	return 1
}

// refusedError is a non-200 answer of the server.
type refusedError struct {
	status  int
	code    string
	message string
}

func (e *refusedError) Error() string {
	if e.code == "" {
		return fmt.Sprintf("HTTP %d", e.status)
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.status, e.code, e.message)
}

// final reports whether every member would refuse alike (auth).
func (e *refusedError) final() bool {
	return e.status == http.StatusUnauthorized || e.status == http.StatusForbidden
}

// download fetches a backup from url into file: into file.tmp, verified
// as it arrives and again from the disk, synced, renamed into place, the
// directory synced. A failure leaves neither file.tmp nor a new file.
func download(ctx context.Context, client *http.Client, url, token, file string) (backup.Metadata, backup.Summary, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return backup.Metadata{}, backup.Summary{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return backup.Metadata{}, backup.Summary{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body)
		return backup.Metadata{}, backup.Summary{}, &refusedError{status: resp.StatusCode, code: body.Error.Code, message: body.Error.Message}
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
	return backup.Verify(f)
}

func syncParent(file string) error {
	d, err := os.Open(filepath.Dir(file))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func snapshotStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the metadata as JSON")
	file, code, ok := parseWithFile(fs, args, stderr)
	if !ok {
		return code
	}
	meta, sum, err := verifyFile(file)
	if err != nil {
		fmt.Fprintf(stderr, "snapshot status: %s: %v\n", file, err)
		return 1
	}
	if *asJSON {
		out := struct {
			File     string          `json:"file"`
			Version  int             `json:"version"`
			Size     int64           `json:"size"`
			Checksum string          `json:"checksum"`
			Metadata backup.Metadata `json:"metadata"`
		}{file, backup.Version, sum.Size, sum.ChecksumString(), meta}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintln(stderr, "snapshot status:", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stdout, "file:          %s (verified)\n", file)
	fmt.Fprintf(stdout, "format:        version %d, state %s\n", backup.Version, meta.StateFormat)
	fmt.Fprintf(stdout, "size:          %d bytes\n", sum.Size)
	fmt.Fprintf(stdout, "checksum:      crc32c:%s\n", sum.ChecksumString())
	fmt.Fprintf(stdout, "revision:      %d\n", meta.Revision)
	fmt.Fprintf(stdout, "keys:          %d\n", meta.Keys)
	fmt.Fprintf(stdout, "applied index: %d\n", meta.AppliedIndex)
	fmt.Fprintf(stdout, "raft term:     %d (commit index %d)\n", meta.RaftTerm, meta.CommitIndex)
	fmt.Fprintf(stdout, "cluster:       %x\n", meta.ClusterID)
	fmt.Fprintf(stdout, "taken on:      %s\n", meta.Node)
	fmt.Fprintf(stdout, "created:       %s\n", meta.Created.Format(time.RFC3339))
	return 0
}

func snapshotRestore(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data", "", "data directory to create for the node (must not exist, or be empty)")
	id := fs.String("id", "", "id of the node the directory is for (one of --peers)")
	peers := fs.String("peers", "", "the NEW cluster's members, id=host:port,... (the same for every member)")
	file, code, ok := parseWithFile(fs, args, stderr)
	if !ok {
		return code
	}
	if *dataDir == "" || *id == "" || *peers == "" {
		fmt.Fprintln(stderr, "snapshot restore: --data, --id and --peers are required")
		return 2
	}
	peerMap, err := parsePeers(*peers)
	if err != nil {
		fmt.Fprintln(stderr, "snapshot restore:", err)
		return 2
	}
	if _, ok := peerMap[*id]; !ok {
		fmt.Fprintf(stderr, "snapshot restore: --id %q is not in --peers\n", *id)
		return 2
	}
	f, err := os.Open(file)
	if err != nil {
		fmt.Fprintln(stderr, "snapshot restore:", err)
		return 1
	}
	defer f.Close()
	res, err := backup.Restore(f, backup.RestoreOptions{DataDir: *dataDir, ID: *id, Peers: peerMap})
	if err != nil {
		fmt.Fprintf(stderr, "snapshot restore: %s: %v\n", file, err)
		return 1
	}
	names := make([]string, 0, len(peerMap))
	for name := range peerMap {
		names = append(names, name)
	}
	slices.Sort(names)
	fmt.Fprintf(stdout, "restored revision %d (%d keys, checksum crc32c:%s) into %s for %s of new cluster %x (members %s; raft snapshot index %d, term %d)\n",
		res.Metadata.Revision, res.Metadata.Keys, res.Summary.ChecksumString(), *dataDir, *id, res.ClusterID,
		strings.Join(names, ", "), res.Index, res.Term)
	fmt.Fprintf(stdout, "start it with: consensus serve --id %s --data %s --peers %s --listen %s --http HOST:PORT\n",
		*id, *dataDir, *peers, peerMap[*id])
	return 0
}
