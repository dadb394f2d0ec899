package certs

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteDevAndLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := WriteDev(dir, []string{"n1", "n2"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "n1.pem", "n1-key.pem", "n2.pem", "n2-key.pem"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	if err := WriteDev(dir, []string{"n1"}); err == nil {
		t.Fatal("WriteDev overwrote existing certificates")
	}
	srv, err := ServerConfig(filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem"), filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if srv.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatal("server config does not require client certificates")
	}
	cli, err := ClientConfig(filepath.Join(dir, "n2.pem"), filepath.Join(dir, "n2-key.pem"), filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	// A full handshake over an in-memory pipe proves the chain verifies
	// both ways for 127.0.0.1.
	c1, c2 := pipe(t)
	errc := make(chan error, 1)
	go func() { errc <- tls.Server(c1, srv).Handshake() }()
	cli.ServerName = "127.0.0.1"
	if err := tls.Client(c2, cli).Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
}

func TestClientConfigRejectsMissingCA(t *testing.T) {
	if _, err := ClientConfig("", "", filepath.Join(t.TempDir(), "nope.pem")); err == nil {
		t.Fatal("missing CA accepted")
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, []byte("not pem"), 0o600)
	if _, err := ClientConfig("", "", bad); err == nil {
		t.Fatal("garbage CA accepted")
	}
}
func pipe(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}
