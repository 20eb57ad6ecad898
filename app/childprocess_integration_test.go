//go:build integration

package app_test

import (
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/erpstream/erpstream/app/apptest"
)

// childProcess is an erpstream command as a process of its own, to be killed with SIGKILL; its
// log goes to a file in its directory.
type childProcess struct {
	t    *testing.T
	bin  string
	args []string
	env  []string
	addr string // its HTTP (or metrics) listener, where /healthz is asked
	dir  string
	cmd  *exec.Cmd
	log  *os.File
}

func buildErpstream(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "erpstream")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/erpstream").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// newChildProcess prepares `erpstream <args>` against e's Kafka and ClickHouse; addrVar names the
// variable its listener address goes into (ERPSTREAM_HTTP_ADDR, ERPSTREAM_METRICS_ADDR).
func newChildProcess(t *testing.T, e *apptest.Env, bin, addrVar string, args []string, env ...string) *childProcess {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logf, err := os.Create(filepath.Join(dir, args[0]+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	p := &childProcess{t: t, bin: bin, args: args, addr: addr, dir: dir, log: logf, env: append(append(os.Environ(),
		"KAFKA_BROKERS="+strings.Join(e.Kafka.Brokers, ","), "ERPSTREAM_TOPIC_PREFIX="+e.Kafka.TopicPrefix, "ERPSTREAM_KAFKA_PARTITIONS=4",
		"CLICKHOUSE_ADDR="+e.CH.Addr, "CLICKHOUSE_DATABASE="+e.CH.Database, addrVar+"="+addr,
		"ERPSTREAM_DEV_MODE=1", "ERPSTREAM_DEV_TOKEN=it-token", "ERPSTREAM_DATA_DIR="+dir,
		"ERPSTREAM_ORG_PARTITIONS="+e.Kafka.OrgPartitions.String(), "ERPSTREAM_ORG_SPREAD="+strings.Join(slices.Sorted(maps.Keys(e.Kafka.SpreadOrgs)), ",")), env...)}

	// A clean stop at the end, so its consumers leave their groups instead of lingering until
	// their session times out.
	t.Cleanup(p.stop)
	return p
}

// stop stops a running process the way an orchestrator does: SIGTERM, SIGKILL after 30 s.
func (p *childProcess) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	p.cmd = nil
}

// start starts the process and waits until /healthz answers 200 (60 s at most).
func (p *childProcess) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Env, p.cmd.Stdout, p.cmd.Stderr = p.env, p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + p.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("erpstream %s not ready within 60 s (log %s)", p.args[0], p.log.Name())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (p *childProcess) kill() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
}

// name is the process's instance id, or its command when it has none.
func (p *childProcess) name() string {
	for i := len(p.env) - 1; i >= 0; i-- {
		if id, ok := strings.CutPrefix(p.env[i], "ERPSTREAM_INSTANCE_ID="); ok {
			return id
		}
	}
	return p.args[0]
}
