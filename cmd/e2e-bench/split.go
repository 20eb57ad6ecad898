package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/erpstream/erpstream/cmd/internal/benchenv"
	"github.com/erpstream/erpstream/internal/chx"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/processor"
	"github.com/erpstream/erpstream/projector"
)

// The split run starts erpstream's stages as processes of their own (as a deployment runs them:
// `erpstream ingest`, N × `erpstream process`, `erpstream project`), so the CPU each spends per
// event can be read from /proc beside the Kafka broker's and ClickHouse's (their pid files).

type process struct {
	name string
	pid  int
	cmd  *exec.Cmd
}

// cpuSeconds is a process's user and system CPU time so far.
func cpuSeconds(pid int) float64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after "(comm)": state is the first, utime the 12th, stime the 13th.
	rest := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(rest) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(rest[11], 64)
	stime, _ := strconv.ParseFloat(rest[12], 64)
	return (utime + stime) / 100 // USER_HZ is 100 on Linux
}

// peakMiB is the most memory a process has held resident (VmHWM): heap, Pebble's memtables and
// block cache, everything.
func peakMiB(pid int) float64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func pidFrom(file string) int {
	if file == "" {
		return 0
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

type splitEnv struct {
	base     string
	procs    []*process
	database string
	topics   string // the topic prefix
	profile  string // CPU profiles go to <profile>.<process name>
	binary   string
	env      []string
	dir      string
}

// startSplit builds erpstream and starts its stages; processors is the number of `process`
// instances (project: with a projector); tokens are ERPSTREAM_API_TOKENS (the orgs' tokens)
// beside the dev token.
func startSplit(processors int, project bool, profile, tokens string) *splitEnv {
	brokers, chAddr := os.Getenv("KAFKA_BROKERS"), os.Getenv("CLICKHOUSE_ADDR")
	if brokers == "" || chAddr == "" {
		fmt.Fprintln(os.Stderr, "KAFKA_BROKERS and CLICKHOUSE_ADDR are required (scripts/test.sh up)")
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "e2e-bench")
	if err != nil {
		panic(err)
	}
	s := &splitEnv{binary: filepath.Join(dir, "erpstream"), profile: profile, dir: dir}
	if out, err := exec.Command("go", "build", "-o", s.binary, "./cmd/erpstream").CombinedOutput(); err != nil {
		panic(fmt.Sprintf("go build: %v\n%s", err, out))
	}
	suffix := strings.ToLower(ids.ULID(time.Now())[:10])
	s.database = "e2e_bench_" + suffix
	port := freePort()
	s.base = "http://127.0.0.1:" + port
	s.topics = "e2e-" + suffix
	s.env = append(os.Environ(), "ERPSTREAM_TOPIC_PREFIX="+s.topics, "ERPSTREAM_KAFKA_PARTITIONS=12", "ERPSTREAM_KAFKA_REPLICATION=1",
		"CLICKHOUSE_DATABASE="+s.database, "ERPSTREAM_DEV_MODE=true", "ERPSTREAM_DEV_TOKEN=bench", "ERPSTREAM_RATE_LIMIT_PER_MIN=-1",
		"ERPSTREAM_LOG_LEVEL=warn", "ERPSTREAM_CONSOLE=off", "ERPSTREAM_API_TOKENS="+tokens,
		// The bench measures the pipeline, not the per-org budget (docs/limits-and-faults.md).
		"ERPSTREAM_ORG_EVENTS_PER_MIN=-1", "ERPSTREAM_ORG_MB_PER_MIN=-1")
	s.env = append(s.env, extraEnv...)
	init := exec.Command(s.binary, "admin", "init")
	init.Env = s.env
	if out, err := init.CombinedOutput(); err != nil {
		panic(fmt.Sprintf("admin init: %v\n%s", err, out))
	}
	s.start("ingest", "ingest", "ERPSTREAM_HTTP_ADDR=127.0.0.1:"+port)
	for i := range processors {
		s.startProcessor(i + 1)
	}
	if project {
		s.start("project", "project", "ERPSTREAM_HTTP_ADDR=127.0.0.1:0")
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			panic("ingest not ready within 60 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	return s
}

func (s *splitEnv) start(name, command string, extra ...string) {
	cmd := exec.Command(s.binary, command)
	cmd.Env = append(append([]string(nil), s.env...), extra...)
	if s.profile != "" {
		cmd.Env = append(cmd.Env, "ERPSTREAM_CPU_PROFILE="+s.profile+"."+name)
	}
	if heapProfile != "" {
		cmd.Env = append(cmd.Env, "ERPSTREAM_HEAP_PROFILE="+heapProfile+"."+name)
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	s.procs = append(s.procs, &process{name: name, pid: cmd.Process.Pid, cmd: cmd})
}

func (s *splitEnv) stop() {
	for _, p := range s.procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range s.procs {
		_ = p.cmd.Wait()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if conn, err := chx.Open(ctx, chx.Config{Addr: os.Getenv("CLICKHOUSE_ADDR"), Database: "default", User: "default"}); err == nil {
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+s.database)
		conn.Close()
	}
	_ = os.RemoveAll(filepath.Dir(s.binary))
	benchenv.DeleteTopics(strings.Split(os.Getenv("KAFKA_BROKERS"), ","), s.topics)
}

// startProcessor starts process instance n: as deployed, its entity states on disk in a
// directory of its own.
func (s *splitEnv) startProcessor(n int) {
	s.start(fmt.Sprintf("process-%d", n), "process", "ERPSTREAM_HTTP_ADDR=127.0.0.1:0", "ERPSTREAM_INSTANCE_ID=bench-"+strconv.Itoa(n),
		"ERPSTREAM_PROCESSOR_STATE_DIR="+filepath.Join(s.dir, fmt.Sprintf("state-%d", n)))
}

func (s *splitEnv) postAs(token, path, contentType string, body []byte) []byte {
	return benchenv.PostAs(s.base, token, path, contentType, body)
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// cpuMeter reads the CPU time of every measured process at the start and end of a round.
type cpuMeter struct {
	names []string
	pids  map[string]int
	start map[string]float64
}

func newCPUMeter(procs []*process, kafkaPID, clickhousePID int) *cpuMeter {
	m := &cpuMeter{pids: map[string]int{}}
	for _, p := range procs {
		m.names = append(m.names, p.name)
		m.pids[p.name] = p.pid
	}
	if kafkaPID > 0 {
		m.names = append(m.names, "kafka")
		m.pids["kafka"] = kafkaPID
	}
	if clickhousePID > 0 {
		m.names = append(m.names, "clickhouse")
		m.pids["clickhouse"] = clickhousePID
	}
	return m
}

func (m *cpuMeter) begin() {
	m.start = map[string]float64{}
	for name, pid := range m.pids {
		m.start[name] = cpuSeconds(pid)
	}
}

// report prints CPU microseconds per event for each process and in all, largest first.
func (m *cpuMeter) report(events int, wall float64) {
	type use struct {
		name string
		sec  float64
	}
	var uses []use
	total := 0.0
	for _, name := range m.names {
		d := cpuSeconds(m.pids[name]) - m.start[name]
		uses = append(uses, use{name, d})
		total += d
	}
	sort.SliceStable(uses, func(i, j int) bool { return uses[i].sec > uses[j].sec })
	var parts []string
	for _, u := range uses {
		parts = append(parts, fmt.Sprintf("%s %.1f", u.name, u.sec*1e6/float64(events)))
	}
	fmt.Printf("          CPU µs per event: %s; all %.1f (%.2f cores busy of the wall time)\n",
		strings.Join(parts, ", "), total*1e6/float64(events), total/wall)
}

// drained reports whether the processor and the projector have consumed everything (a partition
// may stay one behind: the marker of the transaction that wrote its last record). Asking the
// broker costs ClickHouse nothing, so polling it does not weigh on what is measured.
// consumedState sums the groups' committed offsets on the run's own topics and finds the largest
// lag of a partition. The groups are shared by every topic prefix on the broker (earlier runs,
// deleted test topics), so only topics under prefix count; ok is false until every group has
// committed for them.
func consumedState(ctx context.Context, admin *kadm.Client, prefix string, groups ...string) (committed, maxLag int64, ok bool) {
	lags, err := admin.Lag(ctx, groups...)
	if err != nil || len(lags) != len(groups) {
		return 0, 0, false
	}
	ok = true
	lags.Each(func(l kadm.DescribedGroupLag) {
		own := 0
		for topic, parts := range l.Lag {
			if !strings.HasPrefix(topic, prefix+".") {
				continue
			}
			own++
			for _, p := range parts {
				if p.Err != nil {
					ok = false
				}
				committed += max(p.Commit.At, 0)
				maxLag = max(maxLag, p.Lag)
			}
		}
		if l.Error() != nil || own == 0 {
			ok = false
		}
	})
	return committed, maxLag, ok
}

// printProgress prints, every second until stopped, the records the processor and the projector
// have yet to consume of the run's topics.
func printProgress(ctx context.Context, admin *kadm.Client, prefix string, start time.Time) (stop func()) {
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
			}
			behind := map[string]int64{}
			lags, err := admin.Lag(pctx, processor.DefaultGroup, projector.DefaultGroup)
			if err != nil {
				continue
			}
			lags.Each(func(l kadm.DescribedGroupLag) {
				for topic, parts := range l.Lag {
					if strings.HasPrefix(topic, prefix+".") {
						for _, p := range parts {
							behind[l.Group] += max(p.Lag, 0)
						}
					}
				}
			})
			fmt.Printf("    %5.1f s: behind: process %d records, project %d records\n", time.Since(start).Seconds(),
				behind[processor.DefaultGroup], behind[projector.DefaultGroup])
		}
	}()
	return func() { cancel(); <-done }
}
