package cluster

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/pmezard/go-difflib/difflib"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
)

// A release's history is a Secret per revision in the release's namespace
// (as Helm keeps its release records): a Secret, not a ConfigMap, because a
// manifest's objects may be Secrets themselves. Each holds the revision's
// header as JSON (who, when, images by digest, signature, source, result)
// and the objects it applied, gzip-compressed, so that a rollback needs
// nothing but the record. The release lock covers reading and writing them.

// RevisionSecretType is the type of the Secrets that hold revisions.
const RevisionSecretType corev1.SecretType = "idopipe.io/revision.v1"

// Labels of a revision's Secret.
const (
	LabelRevision       = "idopipe.io/revision"
	LabelRevisionStatus = "idopipe.io/status"
)

const (
	revisionPrefix = "idopipe-revision-"
	headerKey      = "revision.json"
	objectsKey     = "objects.json.gz"
	// maxRecordBytes is how much a revision may hold: a Secret's data is
	// limited to 1 MiB; the rest is left for the header and the metadata.
	maxRecordBytes = 1<<20 - 32<<10
	// DefaultHistoryMax is how many revisions are kept by default.
	DefaultHistoryMax = 10
)

// RevisionStatus is what became of a revision.
type RevisionStatus string

// The statuses of a revision.
const (
	// Pending: applied, the wait for its objects not over yet (or the
	// release ended before it was).
	Pending RevisionStatus = "pending"
	// Deployed: what runs now; one revision at most.
	Deployed RevisionStatus = "deployed"
	// Failed: its apply or wait failed.
	Failed RevisionStatus = "failed"
	// Superseded: deployed once, replaced by a later release.
	Superseded RevisionStatus = "superseded"
	// RolledBack: deployed once, replaced by a rollback to an earlier
	// revision.
	RolledBack RevisionStatus = "rolled-back"
)

// WasDeployed tells whether a revision in this status ran successfully
// once, so that a rollback may return to it.
func (s RevisionStatus) WasDeployed() bool {
	return s == Deployed || s == Superseded || s == RolledBack
}

// Revision is one release, deploy or rollback that wrote to the namespace.
type Revision struct {
	Number      int            `json:"revision"`
	Namespace   string         `json:"namespace"`
	Time        time.Time      `json:"time"`    // when its apply began
	Updated     time.Time      `json:"updated"` // when its status last changed
	Status      RevisionStatus `json:"status"`
	Description string         `json:"description"` // "release", "deploy", "rollback to 3"
	// Reason says why it failed (the wait's diagnosis) or what replaced it.
	Reason string `json:"reason,omitempty"`
	// RollbackTo is the revision a rollback redeployed, 0 for others.
	RollbackTo int             `json:"rollbackTo,omitempty"`
	By         Actor           `json:"by"`
	Images     []RevisionImage `json:"images"`
	// Signature names what verified the images' signatures ("" when no
	// signature policy was given).
	Signature  string `json:"signature,omitempty"`
	Source     Source `json:"source,omitzero"`
	SecretName string `json:"secretName"`
	// Objects counts the applied objects recorded; ObjectsOmitted says why
	// they are not (the record would exceed a Secret's 1 MiB): such a
	// revision cannot be rolled back to.
	Objects        int    `json:"objects"`
	ObjectsBytes   int    `json:"objectsBytes"` // compressed
	ObjectsOmitted string `json:"objectsOmitted,omitempty"`
}

// Actor is who made a revision.
type Actor struct {
	// User is the Kubernetes user the API server authenticated
	// (SelfSubjectReview), else the kubeconfig's user name.
	User   string     `json:"user"`
	GitHub *GitHubRun `json:"github,omitempty"`
}

// GitHubRun is the GitHub Actions run that made a revision.
type GitHubRun struct {
	Repository string `json:"repository,omitempty"`
	Workflow   string `json:"workflow,omitempty"`
	RunID      string `json:"runId,omitempty"`
	RunAttempt string `json:"runAttempt,omitempty"`
	Actor      string `json:"actor,omitempty"`
	URL        string `json:"url,omitempty"`
}

func (a Actor) String() string {
	s := a.User
	if s == "" {
		s = "unknown"
	}
	if g := a.GitHub; g != nil {
		s += fmt.Sprintf(" (GitHub Actions %s run %s", g.Repository, g.RunID)
		if g.Actor != "" {
			s += " by " + g.Actor
		}
		s += ")"
	}
	return s
}

// RevisionImage is one image of a revision, by digest.
type RevisionImage struct {
	Name   string `json:"name"`
	Image  string `json:"image"` // the tag it was pushed as
	Digest string `json:"digest"`
}

// Ref is the image by tag and digest.
func (i RevisionImage) Ref() string { return i.Image + "@" + i.Digest }

// Source is the commit a revision was built from.
type Source struct {
	Repository string `json:"repository,omitempty"`
	Commit     string `json:"commit,omitempty"`
}

func revisionName(n int) string { return revisionPrefix + strconv.Itoa(n) }

var revisionSelector = labels.SelectorFromSet(labels.Set{"app.kubernetes.io/managed-by": FieldManager, "app.kubernetes.io/component": "revision"}).String()

// Revisions lists the namespace's revisions, newest first, without their
// objects.
func (c *Client) Revisions(ctx context.Context, ns string) ([]Revision, error) {
	list, err := c.Core.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: revisionSelector})
	if err != nil {
		return nil, c.explain(ctx, err, "list the revisions (Secrets) in "+ns)
	}
	var out []Revision
	for i := range list.Items {
		s := &list.Items[i]
		if s.Type != RevisionSecretType {
			continue
		}
		rev, err := header(s)
		if err != nil {
			return nil, err
		}
		out = append(out, rev)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number > out[j].Number })
	return out, nil
}

func header(s *corev1.Secret) (Revision, error) {
	var rev Revision
	if err := json.Unmarshal(s.Data[headerKey], &rev); err != nil || rev.Number == 0 {
		return rev, fail.WithCause(fail.Cluster, err, "delete it (kubectl delete secret -n "+s.Namespace+" "+s.Name+"); that revision is lost",
			"Secret %s/%s is not an idopipe revision record", s.Namespace, s.Name)
	}
	return rev, nil
}

// RevisionObjects reads revision n with the objects it applied.
func (c *Client) RevisionObjects(ctx context.Context, ns string, n int) (Revision, []manifest.Object, error) {
	s, err := c.Core.CoreV1().Secrets(ns).Get(ctx, revisionName(n), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Revision{}, nil, fail.New(fail.Usage, "list the revisions with `idopipe history -n "+ns+"`", "namespace %s has no revision %d", ns, n)
	}
	if err != nil {
		return Revision{}, nil, c.explain(ctx, err, "read Secret "+ns+"/"+revisionName(n))
	}
	rev, err := header(s)
	if err != nil {
		return rev, nil, err
	}
	if rev.ObjectsOmitted != "" {
		return rev, nil, nil
	}
	objs, err := decodeObjects(s.Data[objectsKey], fmt.Sprintf("revision %d of %s", n, ns))
	if err != nil {
		return rev, nil, fail.WithCause(fail.Cluster, err, "roll back to another revision", "the objects of revision %d in %s cannot be read", n, ns)
	}
	return rev, objs, nil
}

// encodeObjects is objs as gzip-compressed JSON.
func encodeObjects(objs []manifest.Object) ([]byte, error) {
	list := make([]map[string]any, 0, len(objs))
	for _, o := range objs {
		list = append(list, o.Object)
	}
	raw, err := json.Marshal(list)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func decodeObjects(b []byte, source string) ([]manifest.Object, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return nil, err
	}
	var list []map[string]any
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	out := make([]manifest.Object, 0, len(list))
	for _, m := range list {
		out = append(out, manifest.Object{Unstructured: &unstructured.Unstructured{Object: m}, Source: source})
	}
	return out, nil
}

// RecordRevision writes rev (its Number the next free one) with the objects
// it applies, and then drops the oldest revisions beyond max (never the
// deployed one). A record whose objects would not fit in a Secret is
// written without them, and rev.ObjectsOmitted says so.
func (c *Client) RecordRevision(ctx context.Context, rev Revision, objs []manifest.Object, max int) (Revision, error) {
	ns := rev.Namespace
	old, err := c.Revisions(ctx, ns)
	if err != nil {
		return rev, err
	}
	rev.Number = 1
	if len(old) > 0 {
		rev.Number = old[0].Number + 1
	}
	if rev.Time.IsZero() {
		rev.Time = time.Now().UTC()
	}
	rev.Updated = rev.Time
	packed, err := encodeObjects(objs)
	if err != nil {
		return rev, fail.Wrap(fail.Internal, err, "", "cannot encode the objects of revision %d", rev.Number)
	}
	rev.Objects, rev.ObjectsBytes = len(objs), len(packed)
	if len(packed) > maxRecordBytes {
		rev.ObjectsOmitted = fmt.Sprintf("its %d objects are %d KiB compressed, more than a Secret's 1 MiB holds with the record", len(objs), len(packed)>>10)
		packed = nil
	}
	s, err := revisionSecret(rev, packed)
	if err != nil {
		return rev, err
	}
	if _, err := c.Core.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
		return rev, c.explain(ctx, err, "write the record of revision "+strconv.Itoa(rev.Number)+" (Secret "+ns+"/"+s.Name+")")
	}
	return rev, c.trimHistory(ctx, ns, append([]Revision{rev}, old...), max)
}

func revisionSecret(rev Revision, packed []byte) (*corev1.Secret, error) {
	h, err := json.Marshal(rev)
	if err != nil {
		return nil, fail.Wrap(fail.Internal, err, "", "cannot encode revision %d", rev.Number)
	}
	data := map[string][]byte{headerKey: h}
	if packed != nil {
		data[objectsKey] = packed
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: revisionName(rev.Number), Namespace: rev.Namespace,
			Labels: map[string]string{
				"app.kubernetes.io/managed-by": FieldManager, "app.kubernetes.io/component": "revision",
				LabelRevision: strconv.Itoa(rev.Number), LabelRevisionStatus: string(rev.Status),
			},
		},
		Type: RevisionSecretType,
		Data: data,
	}, nil
}

// trimHistory deletes the oldest revisions until at most max remain,
// sparing the deployed one and the newest (revs is newest first).
func (c *Client) trimHistory(ctx context.Context, ns string, revs []Revision, max int) error {
	if max <= 0 {
		return nil
	}
	excess := len(revs) - max
	for i := len(revs) - 1; i > 0 && excess > 0; i-- {
		if revs[i].Status == Deployed {
			continue
		}
		err := c.Core.CoreV1().Secrets(ns).Delete(ctx, revisionName(revs[i].Number), metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return c.explain(ctx, err, "delete the record of revision "+strconv.Itoa(revs[i].Number))
		}
		excess--
	}
	return nil
}

// SetRevisionStatus records what became of revision n (reason: why it
// failed). When it is deployed, the revision deployed before it becomes
// superseded, or rolled-back when n is a rollback.
func (c *Client) SetRevisionStatus(ctx context.Context, ns string, n int, st RevisionStatus, reason string) error {
	rev, err := c.updateRevision(ctx, ns, n, func(r *Revision) { r.Status, r.Reason = st, reason })
	if err != nil || st != Deployed {
		return err
	}
	revs, err := c.Revisions(ctx, ns)
	if err != nil {
		return err
	}
	for _, old := range revs {
		if old.Number == n || old.Status != Deployed {
			continue
		}
		next, why := Superseded, fmt.Sprintf("superseded by revision %d", n)
		if rev.RollbackTo != 0 {
			next, why = RolledBack, fmt.Sprintf("rolled back by revision %d (to %d)", n, rev.RollbackTo)
		}
		if _, err := c.updateRevision(ctx, ns, old.Number, func(r *Revision) { r.Status, r.Reason = next, why }); err != nil {
			return err
		}
	}
	return nil
}

func (c *Client) updateRevision(ctx context.Context, ns string, n int, change func(*Revision)) (Revision, error) {
	secrets := c.Core.CoreV1().Secrets(ns)
	s, err := secrets.Get(ctx, revisionName(n), metav1.GetOptions{})
	if err != nil {
		return Revision{}, c.explain(ctx, err, "read the record of revision "+strconv.Itoa(n))
	}
	rev, err := header(s)
	if err != nil {
		return rev, err
	}
	change(&rev)
	rev.Updated = time.Now().UTC()
	h, err := json.Marshal(rev)
	if err != nil {
		return rev, fail.Wrap(fail.Internal, err, "", "cannot encode revision %d", n)
	}
	s.Data[headerKey] = h
	s.Labels[LabelRevisionStatus] = string(rev.Status)
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
		return rev, c.explain(ctx, err, "update the record of revision "+strconv.Itoa(n))
	}
	return rev, nil
}

// RollbackTarget picks the revision a rollback returns to: want when not
// 0 (it must have run once), else the newest revision before the newest
// one that was deployed once.
func RollbackTarget(revs []Revision, want int) (Revision, error) {
	if len(revs) == 0 {
		return Revision{}, fail.New(fail.Usage, "release or deploy first; idopipe records a revision for each", "no revision is recorded in this namespace")
	}
	if want != 0 {
		for _, r := range revs {
			if r.Number != want {
				continue
			}
			if !r.Status.WasDeployed() && r.Status != Pending {
				return r, fail.New(fail.Usage, "pick a revision that was deployed (idopipe history)", "revision %d %s (%s): it never ran", want, r.Status, r.Reason)
			}
			return r, nil
		}
		return Revision{}, fail.New(fail.Usage, "list the revisions with `idopipe history`", "no revision %d (the history keeps %d to %d)", want, revs[len(revs)-1].Number, revs[0].Number)
	}
	for _, r := range revs[1:] {
		if r.Status.WasDeployed() {
			return r, nil
		}
	}
	return Revision{}, fail.New(fail.Usage, "name the revision to roll back to: idopipe rollback REVISION", "no revision before %d was deployed", revs[0].Number)
}

// WhoAmI is the user the API server authenticates this client as
// (SelfSubjectReview), else the kubeconfig's user name, else "".
func (c *Client) WhoAmI(ctx context.Context) string {
	rev, err := c.Core.AuthenticationV1().SelfSubjectReviews().Create(ctx, selfReview(), metav1.CreateOptions{})
	if err == nil && rev.Status.UserInfo.Username != "" {
		return rev.Status.UserInfo.Username
	}
	return c.ConfigUser
}

func selfReview() *authenticationv1.SelfSubjectReview { return &authenticationv1.SelfSubjectReview{} }

// ObjectDiff is how one object differs between two revisions.
type ObjectDiff struct {
	Ref    string `json:"ref"`    // Kind/namespace/name
	Change string `json:"change"` // added, removed, changed
	Diff   string `json:"diff"`   // unified diff of the YAML (Secret data masked)
}

// DiffRevisions compares the objects of two revisions (before: the
// earlier one, nil for none) by Kind/namespace/name, in after's order
// then before's removed ones; unchanged objects are left out.
func DiffRevisions(before, after []manifest.Object, beforeName, afterName string) []ObjectDiff {
	ref := func(o manifest.Object) string {
		if ns := o.GetNamespace(); ns != "" {
			return o.GetKind() + "/" + ns + "/" + o.GetName()
		}
		return o.GetKind() + "/" + o.GetName()
	}
	old := map[string]manifest.Object{}
	for _, o := range before {
		old[ref(o)] = o
	}
	var out []ObjectDiff
	seen := map[string]bool{}
	diff := func(a, b string, r string) string {
		d, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: difflib.SplitLines(a), B: difflib.SplitLines(b),
			FromFile: beforeName + "/" + r, ToFile: afterName + "/" + r, Context: 2,
		})
		return d
	}
	for _, o := range after {
		r := ref(o)
		seen[r] = true
		now := toYAML(o.Unstructured)
		prev, ok := old[r]
		switch {
		case !ok:
			out = append(out, ObjectDiff{Ref: r, Change: "added", Diff: diff("", now, r)})
		case toYAML(prev.Unstructured) != now:
			out = append(out, ObjectDiff{Ref: r, Change: "changed", Diff: diff(toYAML(prev.Unstructured), now, r)})
		}
	}
	for _, o := range before {
		if r := ref(o); !seen[r] {
			out = append(out, ObjectDiff{Ref: r, Change: "removed", Diff: diff(toYAML(o.Unstructured), "", r)})
		}
	}
	return out
}
