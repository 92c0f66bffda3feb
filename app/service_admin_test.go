package app_test

import (
	"context"
	"testing"

	"builds/app"
)

func TestActiveJobs(t *testing.T) {
	e := newEnv(t)
	root, err := e.svc.CreateUser(context.Background(), "root", "root@example.org", true, "")
	if err != nil {
		t.Fatal(err)
	}
	rootCtx := tokenCtx(t, e.svc, root, "")
	queued := submit(t, e, e.aliceCtx, app.Private)
	done := submit(t, e, e.bobCtx, app.Public)
	if _, err := e.svc.Cancel(e.bobCtx, done.ID); err != nil {
		t.Fatal(err)
	}
	pending, err := e.svc.Submit(e.bobCtx, app.SubmitInput{Manifest: okManifest, Execute: ptr(false)})
	if err != nil {
		t.Fatal(err)
	}

	jobs, err := e.svc.ActiveJobs(rootCtx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].ID != pending.ID || jobs[1].ID != queued.ID {
		t.Errorf("active jobs %v, want [%d %d] (newest first, finished left out)", jobs, pending.ID, queued.ID)
	}
	if jobs, err = e.svc.ActiveJobs(rootCtx, 1); err != nil || len(jobs) != 1 {
		t.Errorf("limit 1: %d jobs, %v", len(jobs), err)
	}

	tests := []struct {
		name string
		ctx  context.Context
		code string
	}{
		{"user", e.aliceCtx, app.EFORBIDDEN},
		{"anonymous", e.anonCtx, app.EUNAUTHORIZED},
		{"admin token without the jobs grant", tokenCtx(t, e.svc, root, "PROFILE:RO"), app.EFORBIDDEN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.ActiveJobs(tt.ctx, 0)
			wantCode(t, err, tt.code)
		})
	}
}
