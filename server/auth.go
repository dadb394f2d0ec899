package server

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// Role is what a bearer token allows.
type Role int

const (
	// RoleNone is no access: no token, or a token not in the file.
	RoleNone Role = iota
	// RoleReadOnly may read keys, lists and status.
	RoleReadOnly
	// RoleReadWrite may also write.
	RoleReadWrite
)

// String returns "ro", "rw" or "none".
func (r Role) String() string {
	switch r {
	case RoleReadOnly:
		return "ro"
	case RoleReadWrite:
		return "rw"
	}
	return "none"
}

// Tokens is a set of bearer tokens and their roles, as read from an
// --auth-token-file. Only SHA-256 digests are kept in memory, and lookups
// compare digests in constant time against every entry, so neither timing
// nor a memory dump gives a token away. Tokens are never logged.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	digest [sha256.Size]byte
	role   Role
}

// LoadTokens reads a token file: one "<token> <role>" per line, role "rw"
// or "ro"; blank lines and lines starting with # are ignored.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	defer f.Close()
	t, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("auth: %s: %w", path, err)
	}
	return t, nil
}

// FirstToken returns the first token of the given role in the token file
// at path: a node calls the other members' APIs with it (see MemberAPI).
// Errors never echo the file's content.
func FirstToken(path string, role Role) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 && !strings.HasPrefix(fields[0], "#") {
			if r, ok := parseRole(fields[1]); ok && r == role {
				return fields[0], nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("auth: %s: %w", path, err)
	}
	return "", fmt.Errorf("auth: %s has no %s token", path, role)
}

// parseRole reads a role as the token file writes it.
func parseRole(s string) (Role, bool) {
	switch s {
	case "rw":
		return RoleReadWrite, true
	case "ro":
		return RoleReadOnly, true
	}
	return RoleNone, false
}

// ParseTokens reads the token file format from r. Errors name the line
// but never echo its content, which may be a secret.
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"<token> <role>\"", line)
		}
		role, ok := parseRole(fields[1])
		if !ok {
			return nil, fmt.Errorf("line %d: role must be rw or ro", line)
		}
		t.entries = append(t.entries, tokenEntry{sha256.Sum256([]byte(fields[0])), role})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("no tokens")
	}
	return t, nil
}

// Lookup returns the role of token, or RoleNone. It takes the same time
// whichever entry matches, or none.
func (t *Tokens) Lookup(token string) Role {
	d := sha256.Sum256([]byte(token))
	role := RoleNone
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(d[:], e.digest[:]) == 1 {
			role = e.role
		}
	}
	return role
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header, or "" if there is none.
func bearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return ""
	}
	return strings.TrimSpace(h[len(prefix):])
}
