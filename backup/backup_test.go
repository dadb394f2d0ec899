package backup

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/kv"
)

// testState is a small kv state with n keys, written through Apply.
func testState(t testing.TB, n int) *kv.Machine {
	t.Helper()
	m := kv.NewMachine()
	s := kv.NewStore(&localNode{m: m}, m)
	for i := range n {
		if _, err := s.Put(context.Background(), fmt.Sprintf("key/%04d", i), []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func testMeta(m *kv.Machine) Metadata {
	v := m.View()
	defer v.Release()
	return Metadata{ClusterID: 0xfedcba9876543210, Node: "n1", Revision: v.Revision, AppliedIndex: v.AppliedIndex,
		RaftTerm: 3, CommitIndex: v.AppliedIndex, Keys: int64(v.Keys), Created: time.Unix(1700000000, 0).UTC()}
}

func encode(t testing.TB, m *kv.Machine) ([]byte, Summary) {
	t.Helper()
	v := m.View()
	defer v.Release()
	var buf bytes.Buffer
	sum, err := Write(&buf, testMeta(m), v)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), sum
}

func TestRoundTrip(t *testing.T) {
	m := testState(t, 300)
	file, sum := encode(t, m)
	if sum.Size != int64(len(file)) {
		t.Fatalf("summary size %d, file %d", sum.Size, len(file))
	}
	if want := crc32.Checksum(file[:len(file)-trailerLen], crcTable); sum.Checksum != want {
		t.Fatalf("checksum %08x, want %08x", sum.Checksum, want)
	}
	// Read through a reader that hands out one byte at a time: the
	// trailer look-ahead must not depend on read sizes.
	br, err := Open(iotest.OneByteReader(bytes.NewReader(file)))
	if err != nil {
		t.Fatal(err)
	}
	meta := br.Metadata()
	want := testMeta(m)
	want.StateFormat = StateFormat
	if !meta.Created.Equal(want.Created) {
		t.Fatalf("created %v, want %v", meta.Created, want.Created)
	}
	meta.Created = want.Created
	if meta != want || meta.Keys != 300 || meta.Revision != 300 {
		t.Fatalf("metadata %+v, want %+v", meta, want)
	}
	restored := kv.NewMachine()
	if err := restored.Restore(consensus.Position{}, br); err != nil {
		t.Fatal(err)
	}
	if got, ok := br.Summary(); !ok || got != sum {
		t.Fatalf("reader summary %+v %v, want %+v", got, ok, sum)
	}
	// The restored state writes the same snapshot bytes: equal states.
	a, b := m.View(), restored.View()
	defer a.Release()
	defer b.Release()
	var wa, wb bytes.Buffer
	if _, err := a.WriteTo(&wa); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteTo(&wb); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(wa.Bytes(), wb.Bytes()) {
		t.Fatal("restored state differs from the original")
	}
	if !bytes.Contains(file, []byte(`"clusterId":"fedcba9876543210"`)) {
		t.Fatal("the cluster id is not stored in hexadecimal")
	}
	gotMeta, gotSum, err := Verify(bytes.NewReader(file))
	if err != nil || gotSum != sum || gotMeta.Revision != 300 {
		t.Fatalf("Verify: %+v %+v %v", gotMeta, gotSum, err)
	}
}

func TestEmptyState(t *testing.T) {
	file, _ := encode(t, kv.NewMachine())
	meta, _, err := Verify(bytes.NewReader(file))
	if err != nil || meta.Keys != 0 || meta.Revision != 0 {
		t.Fatalf("%+v %v", meta, err)
	}
}

// Every damage is refused with its typed error: truncation at every
// length, a flipped bit at every position, appended bytes, another
// magic, a newer version.
func TestDamagedFilesRefused(t *testing.T) {
	file, _ := encode(t, testState(t, 40))
	verify := func(b []byte) error {
		_, _, err := Verify(bytes.NewReader(b))
		return err
	}
	for n := 0; n < len(file); n++ {
		if err := verify(file[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d of %d bytes: %v", n, len(file), err)
		}
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for i := range file {
		b := bytes.Clone(file)
		b[i] ^= 1 << rng.IntN(8)
		err := verify(b)
		switch {
		case i < len(magic):
			if !errors.Is(err, ErrNotBackup) {
				t.Fatalf("bit flipped at %d (magic): %v", i, err)
			}
		case i < 10:
			if !errors.Is(err, ErrVersion) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("bit flipped at %d (version): %v", i, err)
			}
		default:
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("bit flipped at %d of %d: %v", i, len(file), err)
			}
		}
	}
	if err := verify(append(bytes.Clone(file), 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a byte appended: %v", err)
	}
	if err := verify(append(bytes.Clone(file), file...)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("file twice: %v", err)
	}
	// A torn write: the first half of this file, the second of another.
	other, _ := encode(t, testState(t, 41))
	if err := verify(append(bytes.Clone(file[:len(file)/2]), other[len(other)/2:]...)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("torn file: %v", err)
	}
	if err := verify([]byte("KVSN\x01 something else entirely")); !errors.Is(err, ErrNotBackup) {
		t.Fatalf("other magic: %v", err)
	}
	// A newer version with a valid header checksum.
	newer := bytes.Clone(file)
	binary.BigEndian.PutUint16(newer[8:10], Version+1)
	if err := verify(newer); !errors.Is(err, ErrVersion) {
		t.Fatalf("version %d: %v", Version+1, err)
	}
}

// A read error of the underlying stream is passed on, not taken for
// damage or for the end of the file.
func TestReadErrorPassedOn(t *testing.T) {
	file, _ := encode(t, testState(t, 10))
	boom := errors.New("disk on fire")
	r := io.MultiReader(bytes.NewReader(file[:len(file)-5]), iotest.ErrReader(boom))
	if _, _, err := Verify(r); !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v", err)
	}
}

// Write fails, and says so, when the destination or the state does.
func TestWriteErrors(t *testing.T) {
	m := testState(t, 100)
	v := m.View()
	defer v.Release()
	if _, err := Write(failingWriter{after: 10}, testMeta(m), v); err == nil {
		t.Fatal("write to a failing writer succeeded")
	}
	if _, err := Write(failingWriter{after: 1 << 20}, Metadata{}, stateFunc(func(io.Writer) (int64, error) {
		return 0, errors.New("state failed")
	})); err == nil {
		t.Fatal("a failing state gave a file")
	}
}

type failingWriter struct{ after int }

func (f failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.after {
		return f.after, errors.New("no space")
	}
	return len(p), nil
}

type stateFunc func(io.Writer) (int64, error)

func (f stateFunc) WriteTo(w io.Writer) (int64, error) { return f(w) }

// localNode is a kv.Raft that applies at once, on one machine.
type localNode struct {
	m     *kv.Machine
	index uint64
}

func (l *localNode) Propose(_ context.Context, cmd []byte) (any, error) {
	l.index++
	return l.m.Apply(l.index, cmd), nil
}
func (*localNode) LinearizableRead(context.Context) error { return nil }
func (*localNode) Status() consensus.Status               { return consensus.Status{} }
func (*localNode) Ready() error                           { return nil }
