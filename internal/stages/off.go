//go:build !stagetrace

package stages

// Enabled reports whether marks are recorded (build tag stagetrace).
const Enabled = false

// Mark records that the entry at index (0 if none) reached stage now.
func Mark(stage string, index uint64) {}

// Dump writes the marks recorded so far for node.
func Dump(node string) {}
