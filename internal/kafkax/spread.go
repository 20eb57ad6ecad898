package kafkax

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// HeaderCopyOf marks an events record that a processor wrote for the org's partition from an
// event it polled elsewhere ("<partition>/<offset>" of the original): an event forwarded to its
// org's partition, or one mapped away from it (docs/scaling.md). The partitioner puts copies
// in the org's partition, whatever else applies to the org.
const HeaderCopyOf = "erp-forwarded-from"

// IsCopy says whether an events record is a processor's copy (HeaderCopyOf).
func IsCopy(r *kgo.Record) bool {
	return slices.ContainsFunc(r.Headers, func(h kgo.RecordHeader) bool { return h.Key == HeaderCopyOf })
}

// ParseOrgs reads a list of org ids, comma-separated (ERPSTREAM_ORG_SPREAD,
// ERPSTREAM_ORG_MAP_AHEAD); empty gives nil.
func ParseOrgs(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, org := range strings.Split(s, ",") {
		org = strings.TrimSpace(org)
		if org == "" {
			continue
		}
		if strings.Contains(org, "/") || strings.Contains(org, "=") {
			return nil, fmt.Errorf("%q is not an org id", org)
		}
		out[org] = true
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// WithSpread returns the topics with the orgs whose events are spread over the partitions.
func (t Topics) WithSpread(orgs map[string]bool) Topics {
	t.Spread = orgs
	return t
}

// Spreads says whether an org's events are spread (ERPSTREAM_ORG_SPREAD).
func (t Topics) Spreads(org string) bool { return t.Spread[org] }

// SpreadPartition is the events partition among n of a spread org's event with record key key:
// FNV-1a of the whole key (deduplication or event id included) over the partitions no org is
// pinned to, and the org's own partition when it is pinned. An event lands there to be mapped,
// and its mapped copy goes to the org's partition (OrgPartition), where it is applied.
func (t Topics) SpreadPartition(org, key []byte, n int32) int32 {
	home := t.OrgPartition(org, n)
	pinned := t.Placement.pinned(n)
	spread := make([]int32, 0, n)
	for p := range n {
		if p == home || !slices.Contains(pinned, p) {
			spread = append(spread, p)
		}
	}
	h := fnv.New32a()
	_, _ = h.Write(key)
	return spread[h.Sum32()%uint32(len(spread))]
}

// orgOfKey is the org of an events record key ("<org>/…").
func orgOfKey(key []byte) []byte {
	if i := bytes.IndexByte(key, '/'); i >= 0 {
		return key[:i]
	}
	return key
}
