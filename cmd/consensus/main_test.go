package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The test binary doubles as the lock holder TestPausedLockHolderIsFenced
	// runs, and stops, as a process of its own.
	if os.Getenv(pauseHolderEnv) != "" {
		os.Exit(runPauseHolder())
	}
	// And as the queue workers TestQueueWorkersKilledAndPaused kills and
	// pauses.
	if os.Getenv(queueWorkerEnv) != "" {
		os.Exit(runQueueWorker())
	}
	goleak.VerifyTestMain(m)
}
