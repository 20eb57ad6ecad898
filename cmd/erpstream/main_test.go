package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/app"
)

// The defaults of every setting are accepted: a process started with an empty environment must
// not refuse its own defaults.
func TestConfigFromEnvAcceptsTheDefaults(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := configFromEnv(log); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	t.Setenv("ERPSTREAM_FILE_PROXY_LINK_TTL_HOURS", "24")
	t.Setenv("ERPSTREAM_FILE_PROXY_PREVIOUS_KEY_IDS", "k0, k00")
	cfg, err := configFromEnv(log)
	if err != nil || cfg.FileProxyLinkTTL != 24*time.Hour || strings.Join(cfg.FileProxyPreviousKeyIDs, ",") != "k0,k00" {
		t.Fatalf("file proxy settings: %v %+v", err, cfg.FileProxyPreviousKeyIDs)
	}
	t.Setenv("ERPSTREAM_ORG_PARTITIONS", "big=12, other=13")
	if cfg, err := configFromEnv(log); err != nil || cfg.Kafka.OrgPartitions["big"] != 12 || cfg.Kafka.Topics().OrgPartition([]byte("other"), 14) != 13 {
		t.Fatalf("org partitions: %v %+v", err, cfg.Kafka.OrgPartitions)
	}
	for key, bad := range map[string]string{"ERPSTREAM_FILE_PROXY_LINK_TTL_HOURS": "-1", "ERPSTREAM_FILE_PROXY_MAX_MB": "0",
		"ERPSTREAM_EGRESS_ALLOW_CIDRS": "10.0.0.0/33", "ERPSTREAM_ACK_TIMEOUT_MS": "x",
		"ERPSTREAM_PROCESSOR_STANDBY": "yes", "ERPSTREAM_ORG_PARTITIONS": "big:12"} {
		t.Run(key, func(t *testing.T) {
			t.Setenv(key, bad)
			if _, err := configFromEnv(log); err == nil || !strings.Contains(err.Error(), key) {
				t.Errorf("%s=%s: %v, want refused naming the key", key, bad, err)
			}
		})
	}
}

// The processor keeps its entity states on disk unless told otherwise: a heap that grows with
// the entities must be a choice, not a forgotten setting.
func TestProcessorStateIsOnDiskByDefault(t *testing.T) {
	for _, tc := range []struct{ dir, dataDir, want string }{
		{"", "", ".run/processor-state"},
		{"", "/var/lib/x", "/var/lib/x/processor-state"},
		{"/srv/state", "/var/lib/x", "/srv/state"},
		{"memory", "", ""},
	} {
		t.Setenv("ERPSTREAM_PROCESSOR_STATE_DIR", tc.dir)
		t.Setenv("ERPSTREAM_DATA_DIR", tc.dataDir)
		if got := processorStateDir(); got != tc.want {
			t.Errorf("ERPSTREAM_PROCESSOR_STATE_DIR=%q ERPSTREAM_DATA_DIR=%q: %q, want %q", tc.dir, tc.dataDir, got, tc.want)
		}
	}
}

func TestContainerMemoryLimitIsReadFromTheCgroupFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v2 := write("memory.max", "4294967296\n")
	unlimited := write("unlimited", "max\n")
	v1Unlimited := write("limit_in_bytes", "9223372036854771712\n")
	for _, tc := range []struct {
		files []string
		want  int64
	}{
		{[]string{v2}, 4 << 30},
		{[]string{filepath.Join(dir, "absent"), v2}, 4 << 30}, // v1's file absent on a v2 host: the next
		{[]string{unlimited, v2}, 0},                          // the first file present decides
		{[]string{v1Unlimited}, 0},
		{[]string{filepath.Join(dir, "absent")}, 0},
	} {
		if got, _ := containerMemoryLimit(tc.files); got != tc.want {
			t.Errorf("%v: %d, want %d", tc.files, got, tc.want)
		}
	}
}

func TestStatusTakesOrgsAndRefusesOtherArguments(t *testing.T) {
	orgs, err := statusOrgs([]string{"--org", "acme", "--org=globex"})
	if err != nil || len(orgs) != 2 || orgs[0] != "acme" || orgs[1] != "globex" {
		t.Errorf("orgs %v, %v", orgs, err)
	}
	for _, bad := range [][]string{{"--org"}, {"--org="}, {"acme"}, {"--orgs", "x"}} {
		if _, err := statusOrgs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestAdminPartitionsNeedsOneCount(t *testing.T) {
	cfg := app.Config{}
	cfg.Kafka.Brokers = []string{"127.0.0.1:1"} // never reached: the arguments are refused first
	for _, bad := range [][]string{{"partitions"}, {"partitions", "x"}, {"partitions", "0"}, {"partitions", "16", "17"}} {
		if err := admin(context.Background(), cfg, slog.New(slog.DiscardHandler), bad); err == nil || !strings.Contains(err.Error(), "erpstream admin partitions 16") {
			t.Errorf("%q: %v, want the usage", bad, err)
		}
	}
	if err := admin(context.Background(), app.Config{}, slog.New(slog.DiscardHandler), []string{"partitions", "16"}); err == nil ||
		!strings.Contains(err.Error(), "KAFKA_BROKERS") {
		t.Errorf("without brokers: %v", err)
	}
}

// An org is spread or mapped ahead, not both: the two place and map its events differently.
func TestAnOrgIsSpreadOrMappedAheadNotBoth(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	t.Setenv("ERPSTREAM_ORG_SPREAD", "big")
	t.Setenv("ERPSTREAM_ORG_MAP_AHEAD", "other, big")
	if _, err := configFromEnv(log); err == nil || !strings.Contains(err.Error(), "org big is spread too") {
		t.Fatalf("an org in both lists: %v, want refused", err)
	}
	t.Setenv("ERPSTREAM_ORG_MAP_AHEAD", "other")
	cfg, err := configFromEnv(log)
	if err != nil || !cfg.MapAheadOrgs["other"] || len(cfg.MapAheadOrgs) != 1 {
		t.Fatalf("ERPSTREAM_ORG_MAP_AHEAD=other: %v %v", cfg.MapAheadOrgs, err)
	}
}
