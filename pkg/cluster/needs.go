package cluster

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
)

// Some objects cannot even be dry-run before another exists: the
// ServiceAccount admission plugin (on in every real cluster) rejects a Pod
// whose ServiceAccount is missing. When that other object is in the same
// manifest, the plan defers the first (Deferred) and CreateNeeded creates
// the other before validating it; when it is not, the plan fails naming
// what is missing, which is not a permissions problem.

// saLookup is the ServiceAccount plugin's message:
// `error looking up service account ido/planner-service-account: serviceaccount "planner-service-account" not found`.
var saLookup = regexp.MustCompile(`error looking up service account ([^/\s]+)/([^:\s]+):`)

// missingDependency names the object (Kind/namespace/name) whose absence
// made admission reject obj, or "" when err is something else.
func missingDependency(obj manifest.Object, err error) string {
	if !apierrors.IsForbidden(err) && !apierrors.IsNotFound(err) {
		return ""
	}
	if m := saLookup.FindStringSubmatch(err.Error()); m != nil {
		return "ServiceAccount/" + m[1] + "/" + m[2]
	}
	return ""
}

// defaultSAWait bounds the wait for a new namespace's "default"
// ServiceAccount, which the controller-manager makes moments after the
// namespace.
const defaultSAWait = 30 * time.Second

// checkNeeds keeps a Deferred change only when the object it needs is in
// the plan itself. A namespace's "default" ServiceAccount is the
// controller-manager's to make: the change is planned again until it
// exists. Anything else is missing from the cluster and the manifest.
func (c *Client) checkNeeds(ctx context.Context, plan []Change, o ApplyOptions) error {
	inPlan := map[string]bool{}
	for _, ch := range plan {
		inPlan[ch.Ref] = true
	}
	for i := range plan {
		ch := &plan[i]
		if ch.Action != Deferred || inPlan[ch.Needs] {
			continue
		}
		if strings.HasSuffix(ch.Needs, "/default") && strings.HasPrefix(ch.Needs, "ServiceAccount/") {
			deadline := time.Now().Add(defaultSAWait)
			for ch.Action == Deferred && time.Now().Before(deadline) {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(200 * time.Millisecond):
				}
				again, err := c.planOne(ctx, ch.Object, o)
				if err != nil {
					return err
				}
				*ch = again
			}
			if ch.Action != Deferred {
				continue
			}
		}
		_, ns, name := splitRef(ch.Needs)
		return fail.New(fail.Cluster, fmt.Sprintf("add ServiceAccount %s to the manifest or create it in namespace %s", name, ns),
			"%s needs %s, which does not exist", ch.Ref, ch.Needs)
	}
	return nil
}

func splitRef(ref string) (kind, ns, name string) {
	parts := strings.SplitN(ref, "/", 3)
	if len(parts) == 3 {
		return parts[0], parts[1], parts[2]
	}
	return parts[0], "", parts[len(parts)-1]
}

// CreateNeeded creates the objects that Deferred changes need (and that
// are themselves valid: the plan validated them), then validates the
// deferred ones by a dry run. The created ones are marked Done so that
// Execute does not write them again; their results are returned.
func (c *Client) CreateNeeded(ctx context.Context, plan []Change, o ApplyOptions, announce func(string)) ([]Applied, error) {
	var out []Applied
	for round := 0; round < 3; round++ {
		needed := map[string]bool{}
		for _, ch := range plan {
			if ch.Action == Deferred {
				needed[ch.Needs] = true
			}
		}
		if len(needed) == 0 {
			return out, nil
		}
		var deps []Change
		var idx []int
		for i, ch := range plan {
			if needed[ch.Ref] && !ch.Done && ch.Action != Deferred {
				deps = append(deps, ch)
				idx = append(idx, i)
			}
		}
		if len(deps) == 0 {
			break
		}
		applied, err := c.Execute(ctx, deps, o, announce)
		out = append(out, applied...)
		if err != nil {
			return out, err
		}
		for _, i := range idx {
			plan[i].Done = true
			if announce != nil {
				announce("created " + plan[i].Ref + " first: admission of other objects needs it")
			}
		}
		err = forEach(ctx, len(plan), func(ctx context.Context, i int) error {
			if plan[i].Action != Deferred || !needed[plan[i].Needs] {
				return nil
			}
			again, err := c.planOne(ctx, plan[i].Object, o)
			if err == nil && again.Action == Deferred {
				err = fail.New(fail.Cluster, "check the object's references", "%s still needs %s after it was created", again.Ref, again.Needs)
			}
			plan[i] = again
			return err
		})
		if err != nil {
			return out, err
		}
	}
	for _, ch := range plan {
		if ch.Action == Deferred {
			return out, fail.New(fail.Cluster, "add "+ch.Needs+" to the manifest", "%s needs %s, which the plan cannot create", ch.Ref, ch.Needs)
		}
	}
	return out, nil
}
