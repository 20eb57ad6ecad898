package main

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
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
	for key, bad := range map[string]string{"ERPSTREAM_FILE_PROXY_LINK_TTL_HOURS": "-1", "ERPSTREAM_FILE_PROXY_MAX_MB": "0",
		"ERPSTREAM_EGRESS_ALLOW_CIDRS": "10.0.0.0/33", "ERPSTREAM_ACK_TIMEOUT_MS": "x",
		"ERPSTREAM_PROCESSOR_STANDBY": "yes"} {
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
