package schema

import (
	"strings"
	"testing"
)

func TestEmbeddedMigrationsAreNumberedAndSplit(t *testing.T) {
	migs, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(migs) == 0 || migs[0].Version != 1 {
		t.Fatalf("migrations = %+v", migs)
	}
	for _, m := range migs {
		for _, stmt := range m.Statements {
			if strings.HasSuffix(stmt, ";") || strings.Contains(stmt, "--") {
				t.Errorf("%s: statement keeps a terminator or comment: %q", m.Name, stmt)
			}
			// 18.16 rejects these; every statement must run there.
			for _, modern := range []string{"DateTime64", "LowCardinality", "CODEC(", " TTL ", "Map("} {
				if strings.Contains(stmt, modern) {
					t.Errorf("%s uses %s, which ClickHouse 18.16 rejects", m.Name, modern)
				}
			}
		}
	}
}

func TestSplitStatements(t *testing.T) {
	got := splitStatements("-- a comment\nCREATE TABLE a (x UInt8) ENGINE = Memory;\n\nCREATE TABLE b\n(y String)\nENGINE = Memory;\n")
	if len(got) != 2 || got[0] != "CREATE TABLE a (x UInt8) ENGINE = Memory" || !strings.HasPrefix(got[1], "CREATE TABLE b\n(y String)") {
		t.Fatalf("got %q", got)
	}
}

func TestAddColumnStatementsAreRecognised(t *testing.T) {
	if table, column, ok := addsColumn("ALTER TABLE entities ADD COLUMN attribute_versions String DEFAULT ''"); !ok || table != "entities" || column != "attribute_versions" {
		t.Errorf("got %q %q %v", table, column, ok)
	}
	if _, _, ok := addsColumn("CREATE TABLE x (a String) ENGINE = Memory"); ok {
		t.Error("a CREATE TABLE taken for an ADD COLUMN")
	}
}
