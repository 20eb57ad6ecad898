package app

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// Each admin command parses its own flags: --help prints them and succeeds, flags of other
// commands and unknown permissions are refused before anything is contacted.
func TestAdminCommandsParseTheirOwnFlags(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var out bytes.Buffer
	if err := AdminConfig(context.Background(), Config{}, log, []string{"token", "create", "--help"}, nil, &out); err != nil {
		t.Fatalf("--help: %v", err)
	}
	if help := out.String(); !strings.Contains(help, "-perm") || strings.Contains(help, "-domains") {
		t.Errorf("token create --help printed\n%s", help)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "create", "--org", "o", "--name", "n", "--perm", "erp:read,erp:root"}, `unknown permission "erp:root"`},
		{[]string{"token", "list", "--org", "o", "--domains", "x"}, "flag provided but not defined: -domains"},
		{[]string{"token", "explode"}, "unknown admin command"},
		{[]string{"token", "list"}, "--org is required"},
		{[]string{"token", "list", "--org", "o"}, "KAFKA_BROKERS is required"},
	} {
		err := AdminConfig(context.Background(), Config{}, log, tc.args, nil, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
