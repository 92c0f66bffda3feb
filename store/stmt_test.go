package store_test

import (
	"context"
	"sync"
	"testing"

	"builds/app"
)

// TestStatementCacheEviction reads with more distinct statements than the
// cache holds (IN lists of every length), from several goroutines at once,
// so that statements are evicted while others use them.
func TestStatementCacheEviction(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	var ids []int64
	for range 20 {
		ids = append(ids, MustCreateJob(t, db, alice.ID, app.JobPending).ID)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for g := range 3 {
		wg.Go(func() {
			for n := 1; n <= 280; n++ { // the cache holds 256
				// n ids, of which the first min(n, 20) exist: a text per n
				batch := make([]int64, n)
				for i := range batch {
					batch[i] = int64(1_000_000 + i)
					if i < len(ids) {
						batch[i] = ids[i]
					}
				}
				m, err := db.FindTasksForJobs(ctx, batch, nil)
				if err != nil {
					errs <- err
					return
				}
				if want := min(n, len(ids)); len(m) != want {
					t.Errorf("goroutine %d, %d ids: tasks of %d jobs, want %d", g, n, len(m), want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
