package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// writeHeapProfiles writes a profile of the heap in use to path (ERPSTREAM_HEAP_PROFILE) every
// interval until ctx ends, each replacing the last: the file holds what the stage held while it
// worked (a profile at exit would show it torn down). Read it with `go tool pprof`.
func writeHeapProfiles(ctx context.Context, log *slog.Logger, path string, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := writeHeapProfile(path); err != nil {
			log.Warn("heap profile not written", "file", path, "err", err)
			return
		}
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	runtime.GC() // what is live, not what waits to be collected
	if err := errors.Join(pprof.WriteHeapProfile(f), f.Close()); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// startCPUProfile writes a CPU profile of the whole run to path (ERPSTREAM_CPU_PROFILE): where a
// stage's time goes, read with `go tool pprof`. The profile is complete when the process stops
// cleanly (SIGTERM or Ctrl-C).
func startCPUProfile(log *slog.Logger, path string) (stop func()) {
	f, err := os.Create(path)
	if err != nil {
		log.Warn("cpu profile not written", "file", path, "err", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Warn("cpu profile not written", "file", path, "err", err)
		_ = f.Close()
		return func() {}
	}
	log.Info("writing a cpu profile until the process stops", "file", path)
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}
