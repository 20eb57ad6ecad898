package processor

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
)

// Following the topic, an instance skips the states it wrote and applied at commit, but applies
// its own write when the store holds an older version (a commit it took for failed) and every
// other instance's write.
func TestOwnAppliedWritesAreSkippedWhenFollowing(t *testing.T) {
	s := newEntityStore(kafkatest.Quiet(), "me")
	s.m["e1"] = &entityState{Schema: "contact", Version: 10}
	rec := func(writer string, version uint64) *kgo.Record {
		r := &kgo.Record{Key: []byte("e1")}
		other := &entityStore{writer: []byte(writer)}
		r.Headers = other.writtenBy(version)
		return r
	}
	if !s.appliedOwnWrite(rec("me", 10)) {
		t.Error("own write at the held version is not skipped")
	}
	if s.appliedOwnWrite(rec("me", 11)) {
		t.Error("own write newer than the store's is skipped")
	}
	if s.appliedOwnWrite(rec("someone-else", 10)) {
		t.Error("another instance's write is skipped")
	}
	if s.appliedOwnWrite(&kgo.Record{Key: []byte("e1")}) {
		t.Error("a write without headers is skipped")
	}
}
