package processor_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/processor"
)

// Two running processors given one ERPSTREAM_INSTANCE_ID share a transactional id and fence each
// other's transactions in turn. Kafka keeps them exact; the log names the setting to fix.
func TestTwoInstancesSharingAnInstanceIDStayExactAndSaySo(t *testing.T) {
	f := newFleet(t)
	var logs processor.LockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	withLog := func(cfg *processor.Config) { cfg.Log = log }
	a, b := f.start("copied-id", withLog), f.start("copied-id", withLog)
	rounds := []string{"a", "b", "c", "d", "e"}
	for i, round := range rounds {
		f.send(round, 20)
		want := float64((i + 1) * 20 * len(f.orgs))
		waitFor(t, func() bool { return a.mapped()+b.mapped() == want })
	}
	a.halt(t)
	b.halt(t)
	perOrg := 20 * len(f.orgs)
	if changes := f.changes(); changes[envelope.ChangeCreated] != perOrg || changes[envelope.ChangeUpdated] != perOrg*(len(rounds)-1) {
		t.Fatalf("entity changes %v, want %d created and %d updated", changes, perOrg, perOrg*(len(rounds)-1))
	}
	if !strings.Contains(logs.String(), "another running processor has ERPSTREAM_INSTANCE_ID=copied-id") {
		t.Fatalf("no log names the shared instance id:\n%s", logs.String())
	}
}
