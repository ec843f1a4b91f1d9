package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
)

func configMap(name string, data map[string]any) manifest.Object {
	return manifest.Object{Unstructured: &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name, "namespace": "ido"},
		"data":     data,
	}}}
}

func record(t *testing.T, c *Client, st RevisionStatus, max int, objs ...manifest.Object) Revision {
	t.Helper()
	rev, err := c.RecordRevision(context.Background(), Revision{Namespace: "ido", Status: Pending, Description: "release",
		Images: []RevisionImage{{Name: "planner", Image: "r.test/o/planner:1", Digest: "sha256:" + strings.Repeat("a", 64)}}}, objs, max)
	if err != nil {
		t.Fatal(err)
	}
	if st != Pending {
		if err := c.SetRevisionStatus(context.Background(), "ido", rev.Number, st, ""); err != nil {
			t.Fatal(err)
		}
	}
	return rev
}

// TestRevisionRoundTrip: a revision's objects come back as recorded, and
// the list is newest first.
func TestRevisionRoundTrip(t *testing.T) {
	c := &Client{Core: fake.NewClientset()}
	record(t, c, Deployed, 10, configMap("a", map[string]any{"k": "1"}))
	record(t, c, Deployed, 10, configMap("a", map[string]any{"k": "2"}), configMap("b", nil))
	revs, err := c.Revisions(context.Background(), "ido")
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != 2 || revs[0].Number != 2 || revs[1].Number != 1 {
		t.Fatalf("revisions %+v, want 2 then 1", revs)
	}
	if revs[0].Status != Deployed || revs[1].Status != Superseded || revs[1].Reason != "superseded by revision 2" {
		t.Errorf("statuses %s (%s), %s (%s)", revs[0].Status, revs[0].Reason, revs[1].Status, revs[1].Reason)
	}
	rev, objs, err := c.RevisionObjects(context.Background(), "ido", 2)
	if err != nil {
		t.Fatal(err)
	}
	if rev.Objects != 2 || len(objs) != 2 || objs[0].GetName() != "a" || objs[0].Object["data"].(map[string]any)["k"] != "2" {
		t.Errorf("revision 2: %+v, objects %v", rev, objs)
	}
	s, err := c.Core.CoreV1().Secrets("ido").Get(context.Background(), "idopipe-revision-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Type != RevisionSecretType || s.Labels[LabelRevisionStatus] != "deployed" || len(s.Data[objectsKey]) == 0 {
		t.Errorf("secret %+v", s.ObjectMeta)
	}
	if _, _, err := c.RevisionObjects(context.Background(), "ido", 7); fail.ClassOf(err) != fail.Usage {
		t.Errorf("revision 7: %v, want a usage error", err)
	}
}

// TestHistoryMax: the oldest revisions go first, the deployed one never.
func TestHistoryMax(t *testing.T) {
	c := &Client{Core: fake.NewClientset()}
	record(t, c, Deployed, 3) // 1: stays deployed while the others fail
	for range 4 {
		record(t, c, Failed, 3)
	}
	revs, err := c.Revisions(context.Background(), "ido")
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, r := range revs {
		got = append(got, r.Number)
	}
	if len(got) != 3 || got[0] != 5 || got[1] != 4 || got[2] != 1 {
		t.Errorf("kept %v, want [5 4 1]: the newest and the deployed one", got)
	}
}

// TestRollbackStatuses: a rollback that deploys marks the revision it
// replaced rolled-back; RollbackTarget picks the last deployed before the
// current, and refuses one that never ran.
func TestRollbackStatuses(t *testing.T) {
	c := &Client{Core: fake.NewClientset()}
	record(t, c, Deployed, 10)
	record(t, c, Deployed, 10)
	revs, _ := c.Revisions(context.Background(), "ido")
	target, err := RollbackTarget(revs, 0)
	if err != nil || target.Number != 1 {
		t.Fatalf("target %d, %v; want 1", target.Number, err)
	}
	rev, err := c.RecordRevision(context.Background(), Revision{Namespace: "ido", Status: Pending, RollbackTo: 1, Description: "rollback to 1"}, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetRevisionStatus(context.Background(), "ido", rev.Number, Deployed, ""); err != nil {
		t.Fatal(err)
	}
	revs, _ = c.Revisions(context.Background(), "ido")
	if revs[1].Status != RolledBack || revs[2].Status != Superseded {
		t.Errorf("revision 2 %s, 1 %s; want rolled-back, superseded", revs[1].Status, revs[2].Status)
	}
	record(t, c, Failed, 10)
	revs, _ = c.Revisions(context.Background(), "ido")
	if target, err := RollbackTarget(revs, 0); err != nil || target.Number != 3 {
		t.Errorf("after a failed 4: target %d, %v; want 3", target.Number, err)
	}
	if _, err := RollbackTarget(revs, 4); fail.ClassOf(err) != fail.Usage {
		t.Errorf("rollback to the failed revision 4: %v, want refused", err)
	}
}

// TestRevisionTooLarge: objects that do not fit in a Secret are left out
// of the record, which says so.
func TestRevisionTooLarge(t *testing.T) {
	c := &Client{Core: fake.NewClientset()}
	var objs []manifest.Object
	for i := range 3 {
		b := make([]byte, 400<<10)
		_, _ = rand.Read(b)
		objs = append(objs, configMap("big"+string(rune('a'+i)), map[string]any{"k": hex.EncodeToString(b)}))
	}
	rev := record(t, c, Deployed, 10, objs...)
	if rev.ObjectsOmitted == "" || !strings.Contains(rev.ObjectsOmitted, "1 MiB") {
		t.Fatalf("ObjectsOmitted %q", rev.ObjectsOmitted)
	}
	if _, objs, err := c.RevisionObjects(context.Background(), "ido", rev.Number); err != nil || objs != nil {
		t.Errorf("objects %v, %v", objs, err)
	}
}

// TestRevisionSizeOfTheUpstreamManifest: the upstream manifest's objects,
// six times over (the planner and its five plugins are each about that
// size), stay far inside a Secret's 1 MiB.
func TestRevisionSizeOfTheUpstreamManifest(t *testing.T) {
	objs, err := manifest.ReadFile("../../testdata/ido/manifest-0.4.0.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var all []manifest.Object
	for i := range 6 {
		for _, o := range objs {
			c := manifest.Object{Unstructured: o.DeepCopy(), Source: o.Source}
			c.SetName(c.GetName() + "-" + string(rune('a'+i)))
			all = append(all, c)
		}
	}
	packed, err := encodeObjects(all)
	if err != nil {
		t.Fatal(err)
	}
	one, err := encodeObjects(objs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d objects: %d bytes compressed; one manifest, %d objects: %d bytes", len(all), len(packed), len(objs), len(one))
	if len(packed) > 128<<10 {
		t.Errorf("%d bytes compressed: too close to the limit", len(packed))
	}
}
