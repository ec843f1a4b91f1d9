package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
	"github.com/idopipe/idopipe/pkg/report"
)

// wait follows every applied object until it is current (bare Pods Ready,
// workloads rolled out, Jobs complete), reporting each change; a failure
// is diagnosed (ErrImagePull and its cause, crash loops, unschedulable)
// and its Pods' events are shown.
func (rel *release) wait(ctx context.Context) (summary string, err error) {
	defer func() {
		rel.settleRevision(ctx, err)
		rel.waitFailed = err != nil && fail.ClassOf(err) == fail.NotReady
	}()
	ns := rel.o.Deploy.Namespace
	info := func(msg string) {
		rel.r.Report(report.Event{Time: time.Now(), Kind: report.Info, Stage: "wait", Message: msg})
	}
	w, err := rel.kube.Wait(ctx, ns, rel.applied, cluster.WaitOptions{
		Timeout: rel.o.Deploy.Timeout,
		OnChange: func(states []cluster.PodState) {
			for _, s := range states {
				info(s.String())
			}
		},
		OnObjects: func(states []cluster.ObjectState) {
			for _, s := range states {
				info(s.String())
			}
		},
	})
	rel.res.Pods, rel.res.Rollouts = w.Pods, w.Objects
	if err != nil {
		for _, s := range w.Pods {
			for _, e := range s.Events {
				info("Pod " + s.Name + " event: " + e)
			}
		}
		return "", err
	}
	pods := len(manifest.Pods(rel.applied))
	summary = fmt.Sprintf("%d/%d Pods Ready in %s", pods, pods, ns)
	if n := len(w.Objects); n > 0 {
		summary += fmt.Sprintf(", %d/%d objects current", n, n)
	}
	return summary, nil
}
