package processor

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Each topic goes whole to one member subscribed to it; members of another deployment (another
// topic prefix, same group name) get their own topics.
func TestSingleActiveGivesEachTopicToOneSubscriber(t *testing.T) {
	member := func(id string, topics ...string) kmsg.JoinGroupResponseMember {
		m := kmsg.NewJoinGroupResponseMember()
		m.MemberID = id
		m.ProtocolMetadata = singleActive{}.JoinGroupMetadata(topics, nil, 1)
		return m
	}
	b, err := kgo.NewConsumerBalancer(singleActive{}, []kmsg.JoinGroupResponseMember{
		member("b", "a.events"), member("a", "a.events"), member("c", "b.events"),
	})
	if err != nil {
		t.Fatal(err)
	}
	plan := singleActive{}.Balance(b, map[string]int32{"a.events": 4, "b.events": 2}).(*kgo.BalancePlan).AsMemberIDMap()
	if len(plan["a"]["a.events"]) != 4 || len(plan["b"]) != 0 || len(plan["c"]["b.events"]) != 2 {
		t.Errorf("plan %v: want a.events whole to a (lowest id, no leader info), b.events to c, nothing to b", plan)
	}
}
