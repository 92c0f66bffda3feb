package runner

import (
	"builds/forge/forgetest"
	"strings"
	"testing"
)

// TestVMLocalSource: a bare repository on the host, connected by its
// owner by its path and pushed through the post-receive hook's delivery,
// is cloned in a real guest (which cannot reach the host's paths) from
// the server's bundle, and the task runs git log -1 in it.
func TestVMLocalSource(t *testing.T) {
	h, _ := newVMHarness(t)
	repo := forgetest.NewLocal(t, "proj")
	job, sha := connectLocal(t, h.svc, h.user, repo, "image: debian/bookworm\n"+sourceTasks+
		"  - history: |\n      git -C proj log -1 --format='commit %H'\n")
	job = h.wait(job.ID)
	checkLocalClone(t, h, job, repo.Bare)
	if log := h.log(job.ID, "history"); !strings.Contains(log, "commit "+sha) {
		t.Errorf("git log -1 in the guest:\n%s", log)
	}
}
