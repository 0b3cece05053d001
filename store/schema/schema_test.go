package schema_test

import (
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/store/schema"
)

func TestMigrationsRender(t *testing.T) {
	for _, d := range []schema.Dialect{schema.SQLite, schema.Postgres} {
		ms, err := schema.Migrations(d)
		if err != nil {
			t.Fatalf("%s: %v", d.Name, err)
		}
		if len(ms) == 0 || ms[0].Version != 1 || ms[0].Name != "001_init.up.sql" {
			t.Fatalf("%s: first migration %+v", d.Name, ms[0])
		}
		for _, m := range ms {
			if strings.Contains(m.SQL, "{{") || strings.Contains(m.SQL, "<no value>") {
				t.Fatalf("%s: %s is not fully rendered", d.Name, m.Name)
			}
		}
		seq := strings.Contains(ms[0].SQL, "seq        BIGINT GENERATED ALWAYS AS IDENTITY,")
		if seq != (d.Name == "postgres") {
			t.Fatalf("%s: lease event sequence column present: %v", d.Name, seq)
		}
	}
}
