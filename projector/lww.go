package projector

import (
	"encoding/json"

	"github.com/erpstream/erpstream/internal/jsonata"

	"github.com/erpstream/erpstream/internal/envelope"
)

// attributeVersions is stored with each entity row (column attribute_versions): the version of
// the write that set each attribute, of the last delete or restore, and of the last purge. With
// them a write older than the stored row still lands where it belongs: events of one entity can
// be mapped out of order (they sit in different partitions), and dropping an older partial write
// would lose the attributes no newer write set (patch semantics).
type attributeVersions struct {
	Attrs   map[string]uint64 `json:"a,omitempty"`
	Deleted uint64            `json:"d,omitempty"` // the write that last set the deleted flag
	Purged  uint64            `json:"p,omitempty"` // attributes up to this version were dropped
}

// versionsOf reads a stored row's versions. Only versions other than the row's are stored (most
// rows store none: their last write set every attribute they hold), and rows written before
// versions existed store none either: an attribute or deleted flag without one is at the row's.
func versionsOf(cur StoredEntity, attrs *jsonata.Object) attributeVersions {
	var av attributeVersions
	if len(cur.AttributeVersions) > 0 {
		_ = json.Unmarshal(cur.AttributeVersions, &av)
	}
	if av.Attrs == nil {
		av.Attrs = map[string]uint64{}
	}
	for _, k := range attrs.Keys() {
		if _, ok := av.Attrs[k]; !ok {
			av.Attrs[k] = cur.Version
		}
	}
	if av.Deleted == 0 {
		av.Deleted = cur.Version
	}
	return av
}

// compact stores only the versions that differ from the row's version.
func (av attributeVersions) compact(rowVersion uint64) json.RawMessage {
	out := attributeVersions{Attrs: map[string]uint64{}, Purged: av.Purged}
	for k, v := range av.Attrs {
		if v != rowVersion {
			out.Attrs[k] = v
		}
	}
	if av.Deleted != rowVersion {
		out.Deleted = av.Deleted
	}
	if len(out.Attrs) == 0 && out.Deleted == 0 && out.Purged == 0 {
		return nil
	}
	b, _ := json.Marshal(out)
	return b
}

// firstVersions are the versions of an entity's first row: all at the row's, but a purge's.
func firstVersions(w *envelope.EntityWrite) json.RawMessage {
	if w.Op == envelope.OpPurge {
		return attributeVersions{Purged: w.Version}.compact(w.Version)
	}
	return nil
}

// mergeWrite lays w over the stored row, attribute by attribute: an attribute takes w's value
// unless a newer write set it (or a newer purge dropped it); the deleted flag follows the newest
// delete, restore or purge. changed is false when w adds nothing (a write applied already, as
// after a crash, or one every attribute of which is newer in the row): nothing is written then.
// The row's version is w's, or one above the stored row's for a write older than it, so the
// merged row is the newest.
func mergeWrite(cur StoredEntity, w envelope.EntityWrite) (row envelope.EntityWrite, changed bool, _ error) {
	base, err := jsonata.DecodeObject(cur.Attributes)
	if err != nil {
		return w, true, err
	}
	patch, err := jsonata.DecodeObject(w.Attributes)
	if err != nil {
		return w, true, err
	}
	av := versionsOf(cur, base)
	v := w.Version
	deleted, isDelete := cur.Deleted, w.Op != envelope.OpUpsert
	if v > av.Deleted {
		changed = changed || deleted != isDelete
		deleted, av.Deleted = isDelete, v
	}
	if w.Op == envelope.OpPurge && v > av.Purged {
		kept := jsonata.NewObject()
		for _, k := range base.Keys() {
			if av.Attrs[k] > v {
				x, _ := base.Get(k)
				kept.Set(k, x)
			} else {
				delete(av.Attrs, k)
				changed = true
			}
		}
		base, av.Purged = kept, v
	}
	if w.Op != envelope.OpPurge && v > av.Purged {
		for _, k := range patch.Keys() {
			if v > av.Attrs[k] {
				x, _ := patch.Get(k)
				base.Set(k, x)
				av.Attrs[k] = v
				changed = true
			}
		}
	}
	if !changed {
		return w, false, nil
	}
	row = w
	if row.Attributes, err = jsonata.MarshalValue(base); err != nil {
		return w, true, err
	}
	if v <= cur.Version {
		row.Version = cur.Version + 1
	}
	if deleted != isDelete { // an older write under a newer delete or restore
		row.Op = envelope.OpUpsert
		if deleted {
			row.Op = envelope.OpDelete
		}
	}
	row.AttributeVersions = av.compact(row.Version)
	return row, true, nil
}
