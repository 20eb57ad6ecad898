-- Per-attribute versions of each entity row (projector/lww.go): a write older than the stored
-- row still sets the attributes no newer write set. Empty on rows written before: their
-- attributes count at the row's version. (18.16 has no ADD COLUMN IF NOT EXISTS: the migrator
-- skips an ADD COLUMN whose column exists, so a migration interrupted after it can run again.)
ALTER TABLE entities ADD COLUMN attribute_versions String DEFAULT '';
