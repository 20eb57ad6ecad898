package processor

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// singleActive is the processors' group balancer: every partition goes to one member, the group
// leader (the coordinator keeps the leader until it leaves), and the other instances stand by.
// The entity state is global and read whole by every instance, while events of one entity are
// spread over all partitions; with partitions split between instances, two of them could map
// events of one entity at the same moment from the same state (an append missing the other's
// item). With one active instance the state is exact; a standby keeps its copy of the state
// warm and takes over when the active one leaves the group or stops heartbeating.
type singleActive struct{}

func (singleActive) ProtocolName() string { return "erpstream-single-active" }
func (singleActive) IsCooperative() bool  { return false }

func (singleActive) JoinGroupMetadata(interests []string, _ map[string][]int32, generation int32) []byte {
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Version = 3
	meta.Topics = interests
	meta.Generation = generation
	return meta.AppendTo(nil)
}

func (singleActive) ParseSyncAssignment(assignment []byte) (map[string][]int32, error) {
	return kgo.ParseConsumerSyncAssignment(assignment)
}

func (s singleActive) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	b, err := kgo.NewConsumerBalancer(s, members)
	return b, b.MemberTopics(), err
}

func (singleActive) Balance(b *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	plan := b.NewPlan()
	members := b.Members()
	if len(members) == 0 {
		return plan
	}
	// The leader, else (a client balancing without the info) the lowest member id: deterministic.
	active := -1
	leader := b.Info().LeaderID
	for i := range members {
		if members[i].MemberID == leader {
			active = i
		}
	}
	if active < 0 {
		ids := make([]int, len(members))
		for i := range ids {
			ids[i] = i
		}
		sort.Slice(ids, func(x, y int) bool { return members[ids[x]].MemberID < members[ids[y]].MemberID })
		active = ids[0]
	}
	member, meta := b.MemberAt(active)
	for _, topic := range meta.Topics {
		n, ok := topics[topic]
		if !ok {
			continue
		}
		partitions := make([]int32, n)
		for p := range partitions {
			partitions[p] = int32(p)
		}
		plan.AddPartitions(member, topic, partitions)
	}
	return plan
}
