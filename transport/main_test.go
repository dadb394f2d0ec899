package transport

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine running: every
// stream, writer and server goroutine must end by the time Close returns.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
