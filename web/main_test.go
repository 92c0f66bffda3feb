package web

import (
	"testing"

	"builds/store/storetest"
)

// TestMain runs the tests on SQLite and again on PostgreSQL: the API
// tests (apiEnv) on both, the web UI's on SQLite only.
func TestMain(m *testing.M) { storetest.Main(m) }
