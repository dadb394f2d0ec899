package backup

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
)

// etcd's snapshot stream (Maintenance.Snapshot) ends with the SHA-256 of
// everything before it, and etcdctl's `snapshot save` takes a download for
// whole only if its size is a multiple of 512 plus those 32 bytes. A
// backup served through etcd's API is therefore wrapped in that envelope:
//
//	the backup | zeros up to a multiple of 512 bytes | SHA-256 of both (32)
//
// A backup ends with its trailer's magic "KABC", so the padding is found
// by stripping zeros. Unwrap takes the envelope off again: every reader of
// backup files (verify, restore) accepts either form.
const (
	etcdSectorSize = 512
	etcdSumSize    = sha256.Size
)

// EtcdWriter wraps a backup written through it in etcd's snapshot
// envelope; Close writes the padding and the checksum (it does not close
// the underlying writer).
type EtcdWriter struct {
	w   io.Writer
	sum hash.Hash
	n   int64
}

// NewEtcdWriter returns an EtcdWriter writing to w.
func NewEtcdWriter(w io.Writer) *EtcdWriter {
	return &EtcdWriter{w: w, sum: sha256.New()}
}

func (e *EtcdWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	e.sum.Write(p[:n])
	e.n += int64(n)
	return n, err
}

// Close writes the padding and the SHA-256.
func (e *EtcdWriter) Close() error {
	if pad := (etcdSectorSize - e.n%etcdSectorSize) % etcdSectorSize; pad > 0 {
		if _, err := e.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	_, err := e.w.Write(e.sum.Sum(nil))
	return err
}

// Unwrap returns the backup f holds (size bytes long): f itself when it is
// a plain backup file, or the backup inside etcd's snapshot envelope,
// whose checksum it verifies. A file that has the envelope's shape but
// whose checksum disagrees is not taken for one and is returned whole (its
// own format then refuses it).
func Unwrap(f io.ReaderAt, size int64) (*io.SectionReader, error) {
	whole := io.NewSectionReader(f, 0, size)
	if size < etcdSumSize+trailerLen || size%etcdSectorSize != etcdSumSize {
		return whole, nil
	}
	body := size - etcdSumSize
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, body)); err != nil {
		return nil, fmt.Errorf("backup: read: %w", err)
	}
	var want [etcdSumSize]byte
	if _, err := f.ReadAt(want[:], body); err != nil {
		return nil, fmt.Errorf("backup: read: %w", err)
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		return whole, nil
	}
	// The padding is fewer than 512 zeros after the backup's last byte,
	// which is not a zero.
	tail := min(body, etcdSectorSize)
	buf := make([]byte, tail)
	if _, err := f.ReadAt(buf, body-tail); err != nil {
		return nil, fmt.Errorf("backup: read: %w", err)
	}
	inner := body - int64(len(buf)-len(bytes.TrimRight(buf, "\x00")))
	return io.NewSectionReader(f, 0, inner), nil
}
