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
	// Deployments with other topic prefixes may share the group name: each topic goes whole to one
	// of the members subscribed to it, the leader if it is one (the coordinator keeps the leader
	// until it leaves), else the lowest member id (deterministic).
	leader := b.Info().LeaderID
	active := map[string]int{} // topic -> member index
	for i := range b.Members() {
		member, meta := b.MemberAt(i)
		for _, topic := range meta.Topics {
			cur, seen := active[topic]
			if !seen || member.MemberID == leader ||
				(b.Members()[cur].MemberID != leader && member.MemberID < b.Members()[cur].MemberID) {
				active[topic] = i
			}
		}
	}
	names := make([]string, 0, len(active))
	for topic := range active {
		names = append(names, topic)
	}
	sort.Strings(names)
	for _, topic := range names {
		n, ok := topics[topic]
		if !ok {
			continue
		}
		partitions := make([]int32, n)
		for p := range partitions {
			partitions[p] = int32(p)
		}
		member, _ := b.MemberAt(active[topic])
		plan.AddPartitions(member, topic, partitions)
	}
	return plan
}
