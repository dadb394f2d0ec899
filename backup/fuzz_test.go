package backup

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/kv"
)

// FuzzReadBackup feeds arbitrary bytes to the backup reader: it must
// refuse them with ErrCorrupt, ErrVersion or ErrNotBackup, never panic,
// hang or allocate what a length field claims; whatever it accepts must
// be byte for byte a file Write could have produced (the trailer's length
// and checksum match).
func FuzzReadBackup(f *testing.F) {
	good, _ := encode(f, testState(f, 5))
	empty, _ := encode(f, kv.NewMachine())
	f.Add(good)
	f.Add(empty)
	f.Add(good[:len(good)-1])
	f.Add(good[:fixedHeaderLen])
	f.Add(append(bytes.Clone(good), 'x'))
	f.Add([]byte("CNSBAK\r\n\x00\x01\x00\x00\xff\xff\xff\xff"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		br, err := Open(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrNotBackup) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		n, err := io.Copy(io.Discard, br)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		sum, ok := br.Summary()
		if !ok || sum.Size != int64(len(b)) || n > int64(len(b)) {
			t.Fatalf("accepted %d bytes with summary %+v (verified %v), state %d", len(b), sum, ok, n)
		}
		// An accepted state either restores or is refused cleanly.
		_ = kv.NewMachine().Restore(consensus.Position{}, bytes.NewReader(b[len(b)-int(n)-trailerLen:len(b)-trailerLen]))
	})
}
