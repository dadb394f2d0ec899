package backup

import (
	"bytes"
	"errors"
	"testing"
)

// wrap puts file in etcd's snapshot envelope.
func wrap(t *testing.T, file []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewEtcdWriter(&buf)
	if _, err := w.Write(file); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestEtcdEnvelope(t *testing.T) {
	for _, n := range []int{0, 1, 30, 300} {
		file, sum := encode(t, testState(t, n))
		wrapped := wrap(t, file)
		// etcdctl's test of a whole download: a multiple of 512 plus the SHA-256.
		if len(wrapped)%512 != 32 || len(wrapped) < len(file)+32 {
			t.Fatalf("%d keys: envelope of %d bytes around %d", n, len(wrapped), len(file))
		}
		r, err := Unwrap(bytes.NewReader(wrapped), int64(len(wrapped)))
		if err != nil {
			t.Fatal(err)
		}
		if r.Size() != int64(len(file)) {
			t.Fatalf("%d keys: unwrapped %d bytes, want %d", n, r.Size(), len(file))
		}
		if _, got, err := Verify(r); err != nil || got != sum {
			t.Fatalf("%d keys: verify the unwrapped backup: %+v %v", n, got, err)
		}
		// A plain backup is returned as it is.
		plain, err := Unwrap(bytes.NewReader(file), int64(len(file)))
		if err != nil || plain.Size() != int64(len(file)) {
			t.Fatalf("%d keys: plain backup: %d bytes, %v", n, plain.Size(), err)
		}
	}

	// A damaged envelope is not unwrapped, and the whole is no backup.
	file, _ := encode(t, testState(t, 10))
	for _, at := range []int{len(file) + 1, len(file) - 3} {
		bad := wrap(t, file)
		bad[at] ^= 1
		r, err := Unwrap(bytes.NewReader(bad), int64(len(bad)))
		if err != nil {
			t.Fatal(err)
		}
		if r.Size() != int64(len(bad)) {
			t.Fatalf("flip at %d: unwrapped to %d bytes", at, r.Size())
		}
		if _, _, err := Verify(r); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at %d: verify %v, want ErrCorrupt", at, err)
		}
	}
}
