package main

import (
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// The stages run with GOGC=200 (main.go): a heap of 300 MB in use may grow to 900 MB before it
// is collected. In a container with a memory limit that headroom can cross the limit and get the
// process killed, so, unless the operator set GOMEMLIMIT, the Go heap's soft limit is put at
// three quarters of the container's limit: the collector then works harder as the limit nears
// instead of the kernel killing the process. The quarter left is for what Go does not count:
// Pebble's memtables and block cache (the processor's store) and the stacks.

// cgroupMemoryFiles are where cgroup v2 and v1 publish the container's memory limit.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// setMemoryLimitFromContainer applies the soft limit when the process runs under a memory limit.
func setMemoryLimitFromContainer(log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit, file := containerMemoryLimit(cgroupMemoryFiles)
	if limit <= 0 {
		return
	}
	soft := limit / 4 * 3
	debug.SetMemoryLimit(soft)
	log.Info("Go heap soft limit set from the container's memory limit", "container_limit_bytes", limit, "go_memory_limit_bytes", soft,
		"from", file, "hint", "set GOMEMLIMIT to choose it yourself")
}

// containerMemoryLimit is the first limit the files give, 0 when there is none ("max", absent,
// or so large it means unlimited: cgroup v1 reports about 2^63 then).
func containerMemoryLimit(files []string) (int64, string) {
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(raw))
		if v == "max" {
			return 0, f
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0, f
		}
		return n, f
	}
	return 0, ""
}
