package pipeline_test

import (
	"context"
	"strings"
	"testing"

	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/pipeline"
)

// TestReleaseRecordsRevisions: each release that writes records a revision
// under the lock, before its first object write, deployed once its wait
// passed; the one before becomes superseded.
func TestReleaseRecordsRevisions(t *testing.T) {
	f := newFixture(t)
	f.kube.compare = true
	f.o.History.Source = cluster.Source{Commit: "abc123"}
	for i, v := range []string{"0.4.0", "0.5.0", "0.5.0"} {
		f.o.Images[0].Version = v
		if _, _, err := f.release(context.Background(), t); err != nil {
			t.Fatalf("release %d: %v", i+1, err)
		}
	}
	revs := f.kube.revisions
	if len(revs) != 2 {
		t.Fatalf("%d revisions recorded, want 2 (the third release changed nothing)", len(revs))
	}
	if revs[0].Status != cluster.Superseded || revs[1].Status != cluster.Deployed {
		t.Errorf("statuses %s, %s; want superseded, deployed", revs[0].Status, revs[1].Status)
	}
	r := revs[0]
	if r.By.User != "tester" || r.Source.Commit != "abc123" || r.Description != "release" || len(r.Images) != 1 || r.Images[0].Digest != digestOf("planner") {
		t.Errorf("revision 2 = %+v", r)
	}
	if n := len(f.kube.revObjs[2]); n != 2 {
		t.Errorf("revision 2 holds %d objects, want the 2 applied", n)
	}
	if revs[1].Images[0].Digest == r.Images[0].Digest {
		t.Errorf("revision 2 records revision 1's digest")
	}
	calls := f.calls.all()
	lock, rec, write := f.calls.index("lock"), f.calls.index("write revision"), f.calls.index("write 2")
	if !(lock < rec && rec < write) {
		t.Errorf("want lock, then the record, then the apply: %q", calls)
	}
}

// TestFailedWaitRecordsFailure: a wait that fails leaves the revision
// failed with the wait's diagnosis, and the one deployed before deployed.
func TestFailedWaitRecordsFailure(t *testing.T) {
	f := newFixture(t)
	f.kube.compare = true
	if _, _, err := f.release(context.Background(), t); err != nil {
		t.Fatal(err)
	}
	f.kube.failWaits = 1
	f.o.Images[0].Version = "0.5.0"
	_, _, err := f.release(context.Background(), t)
	if fail.ClassOf(err) != fail.NotReady {
		t.Fatalf("err = %v, want not-ready", err)
	}
	revs := f.kube.revisions
	if revs[0].Status != cluster.Deployed || revs[1].Status != cluster.Failed || !strings.Contains(revs[1].Reason, "crash-loop") {
		t.Errorf("revisions %+v", revs)
	}
}

// TestRollbackOnFailure: with RollbackOnFailure a failed wait rolls back
// to the revision deployed before, under the same lock, waits for it, and
// still fails with the wait's class, saying what runs now.
func TestRollbackOnFailure(t *testing.T) {
	f := newFixture(t)
	f.kube.compare = true
	if _, _, err := f.release(context.Background(), t); err != nil {
		t.Fatal(err)
	}
	first := f.kube.revisions[0].Images[0].Digest
	f.kube.failWaits = 1
	f.o.Images[0].Version = "0.5.0"
	f.o.RollbackOnFailure = true
	res, _, err := f.release(context.Background(), t)
	if fail.ClassOf(err) != fail.NotReady {
		t.Fatalf("err = %v, want not-ready", err)
	}
	if !strings.Contains(err.Error(), "crash-loop") || !strings.Contains(err.Error(), "rolled back to revision 1") {
		t.Errorf("err %q: want the failure and the rollback", err)
	}
	if res.RolledBack == nil || res.RolledBack.To != 1 || res.RolledBack.Revision != 3 {
		t.Fatalf("RolledBack = %+v", res.RolledBack)
	}
	revs := f.kube.revisions
	if len(revs) != 3 || revs[2].Description != "rollback to 1" || revs[2].Status != cluster.Deployed || revs[2].Images[0].Digest != first {
		t.Errorf("revisions %+v", revs)
	}
	if revs[1].Status != cluster.Failed {
		t.Errorf("revision 2 is %s, want failed", revs[1].Status)
	}
	if n := f.calls.count("lock"); n != 2 {
		t.Errorf("%d locks taken, want 1 per release (the rollback holds the failed release's): %q", n, f.calls.all())
	}
}

// TestRollbackChecksImagesFirst: a revision whose image is gone from the
// registry is refused before anything is written, naming the digest.
func TestRollbackChecksImagesFirst(t *testing.T) {
	f := newFixture(t)
	f.kube.compare = true
	if _, _, err := f.release(context.Background(), t); err != nil {
		t.Fatal(err)
	}
	f.o.Images[0].Version = "0.5.0"
	if _, _, err := f.release(context.Background(), t); err != nil {
		t.Fatal(err)
	}
	// The registry loses the first release's tag and digest.
	f.reg.mu.Lock()
	delete(f.reg.tags, "registry.test/my-org/planner:0.4.0")
	f.reg.mu.Unlock()
	before := len(f.calls.all())
	_, err := pipeline.Rollback(context.Background(), f.o, f.deps(), &events{})
	if fail.ClassOf(err) != fail.NotFound || !strings.Contains(err.Error(), digestOf("planner")) || !strings.Contains(err.Error(), "revision 1") {
		t.Fatalf("err = %v, want not-found naming revision 1's digest", err)
	}
	for _, c := range f.calls.all()[before:] {
		if strings.HasPrefix(c, "write") || c == "lock" {
			t.Errorf("wrote %q before refusing", c)
		}
	}
}

// TestRollbackRedeploysTheRecord: a rollback applies the recorded objects
// and images (no manifest file read) and records "rollback to N".
func TestRollbackRedeploysTheRecord(t *testing.T) {
	f := newFixture(t)
	f.kube.compare = true
	for _, v := range []string{"0.4.0", "0.5.0"} {
		f.o.Images[0].Version = v
		if _, _, err := f.release(context.Background(), t); err != nil {
			t.Fatal(err)
		}
	}
	o := f.o
	o.Deploy.Manifests = []string{"/nonexistent.yaml"}
	res, err := pipeline.Rollback(context.Background(), o, f.deps(), &events{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Ref, "planner:0.4.0@") {
		t.Errorf("rolled back to %s, want the 0.4.0 image", res.Ref)
	}
	revs := f.kube.revisions
	if len(revs) != 3 || revs[2].RollbackTo != 1 || revs[2].Status != cluster.Deployed || revs[1].Status != cluster.Superseded {
		t.Errorf("revisions %+v", revs)
	}
	if len(f.kube.revObjs[3]) != len(f.kube.revObjs[1]) {
		t.Errorf("the rollback applied %d objects, revision 1 had %d", len(f.kube.revObjs[3]), len(f.kube.revObjs[1]))
	}
}

// TestLostLockStopsTheRun: when the lock is lost, the run ends with the
// lost lock's error, not the request that failed because of it.
func TestLostLockStopsTheRun(t *testing.T) {
	f := newFixture(t)
	f.kube.compare = true
	lost := fail.New(fail.LockLost, "rerun", "lost the release lock of namespace ido to someone")
	f.kube.fail["write 2"] = fail.Wrap(fail.Cluster, lost, "", "cannot apply")
	f.kube.lost = lost
	_, _, err := f.release(context.Background(), t)
	if fail.ClassOf(err) != fail.LockLost {
		t.Fatalf("err = %v, want lock-lost", err)
	}
}
