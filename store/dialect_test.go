package store

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestToPostgres(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"Placeholders", `SELECT a FROM t WHERE b = ? AND c IN (?, ?) LIMIT ?`,
			`SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) LIMIT $4`},
		{"QuotedMarks", `SELECT '?', "a?b", 'it''s ?' FROM t WHERE x = ?`,
			`SELECT '?', "a?b", 'it''s ?' FROM t WHERE x = $1`},
		{"Like", `SELECT 1 FROM jobs WHERE note LIKE ? ESCAPE '\' AND unlike = 'LIKE'`,
			`SELECT 1 FROM jobs WHERE note ILIKE $1 ESCAPE '\' AND unlike = 'LIKE'`},
		{"IndexedBy", "SELECT id FROM jobs INDEXED BY jobs_logs_unpruned\n\t\tWHERE x = ?",
			"SELECT id FROM jobs\n\t\tWHERE x = $1"},
		{"IndexedByAlias", `FROM artifacts a INDEXED BY artifacts_unpruned JOIN jobs j ON j.id = a.job_id`,
			`FROM artifacts a JOIN jobs j ON j.id = a.job_id`},
		{"UnaryPlus", `WHERE a < ? AND +status IN ('x') AND +j.status = ? OR (+b)`,
			`WHERE a < $1 AND status IN ('x') AND j.status = $2 OR (b)`},
		{"BinaryPlus", `SELECT a + b, a+1, 'x' || +1 FROM t WHERE n = m + ?`,
			`SELECT a + b, a+1, 'x' || +1 FROM t WHERE n = m + $1`},
		{"IndexedColumn", `SELECT indexed FROM t`, `SELECT indexed FROM t`},
		{"Unterminated", `SELECT 'a ? b`, `SELECT 'a ? b`},
		{"Empty", ``, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := toPostgres(tt.in); got != tt.want {
				t.Fatalf("toPostgres(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

// A huge query (IN lists of many thousands) is translated in one pass.
func TestToPostgresHuge(t *testing.T) {
	n := 100_000
	got := toPostgres(`SELECT 1 WHERE id IN (` + placeholders(n) + `)`)
	if !strings.HasSuffix(got, "$100000)") || strings.Contains(got, "?") {
		t.Fatalf("tail %q", got[len(got)-20:])
	}
}

func FuzzToPostgres(f *testing.F) {
	f.Add(`SELECT a FROM t INDEXED BY i WHERE +b = ? AND c LIKE '?'`)
	f.Fuzz(func(t *testing.T, q string) {
		out := toPostgres(q) // never panics
		if !strings.Contains(q, "'") && !strings.Contains(q, `"`) && strings.Contains(out, "?") {
			t.Fatalf("a placeholder left in %q", out)
		}
	})
}

// TestMigrationsMatch checks that each migration exists for both
// databases, and that none was put in migrations/ itself, where neither
// would run it.
func TestMigrationsMatch(t *testing.T) {
	names := func(dir string) []string {
		ents, err := fs.ReadDir(migrationFS, dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	sqlite, postgres := names("migrations/sqlite"), names("migrations/postgres")
	if len(sqlite) == 0 || !slices.Equal(sqlite, postgres) {
		t.Fatalf("migrations differ:\n sqlite:   %v\n postgres: %v\nevery migration needs a file of the same name in both directories", sqlite, postgres)
	}
	stray, err := filepath.Glob("migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if len(stray) > 0 {
		t.Fatalf("%v: migrations go in migrations/sqlite and migrations/postgres (the same change written for each)", stray)
	}
	if _, err := os.Stat("migrations"); err != nil {
		t.Fatal(err)
	}
}
