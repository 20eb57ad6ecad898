package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

// A dependency that is away at start is waited for, not a reason to exit; ctx still ends the wait.
func TestWaitReachableRetriesUntilTheDependencyAnswers(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tries := 0
	err := waitReachable(context.Background(), log, "kafka", func(context.Context) error {
		if tries++; tries < 3 {
			return errors.New("connection refused")
		}
		return nil
	})
	if err != nil || tries != 3 {
		t.Fatalf("err %v after %d tries, want success on the third", err, tries)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := waitReachable(ctx, log, "clickhouse", func(context.Context) error { return errors.New("down") }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a dependency that never answers: %v, want the context's end", err)
	}
}

func TestReadinessNamesWhatIsMissing(t *testing.T) {
	r := newReadiness()
	if err := r.check(); err == nil || err.Error() != "starting" {
		t.Fatalf("before start: %v", err)
	}
	r.started.Store(true)
	if err := r.check(); err != nil {
		t.Fatalf("started, no dependency probed yet: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		r.probe(ctx, "clickhouse", time.Hour, func(context.Context) error { return errors.New("connection refused") })
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for r.check() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := r.check(); err == nil || err.Error() != "clickhouse unreachable: connection refused" {
		t.Errorf("after a failed probe: %v", err)
	}
	cancel()
	<-done
}
