package main

import (
	"log/slog"
	"os"
	"runtime/pprof"
)

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
