package commands

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/manifest"
)

// historyOptions are history's flags: kubectl's, and the revision to show.
type historyOptions struct {
	g        *options.GlobalOptions
	kube     *options.KubeOptions
	revision int // 0: list them all
}

func newHistoryCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	o := &historyOptions{g: g, kube: options.NewKubeOptions()}
	cmd := &cobra.Command{
		Use:   "history [REVISION]",
		Short: "List the revisions released into a namespace, or show one with its diff",
		Long: `history lists what idopipe recorded of each release, deploy and rollback that
wrote to the namespace, newest first: the revision, when, its result (deployed,
failed, superseded, rolled-back, pending), what it was, its image by digest,
and who made it. With a REVISION it shows that one in full (images, the
signature check that passed, the source commit, the GitHub Actions run) and
how its objects differ from the revision before it.

The records are Secrets of type ` + string(cluster.RevisionSecretType) + ` in the namespace; --history-max
of release, deploy and rollback says how many are kept.`,
		Example: `  idopipe history -n ido
  idopipe history 3 -n ido        # revision 3 and its diff against revision 2
  idopipe history -n ido -o json`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: withRevision(env, g, o, &o.revision),
	}
	o.kube.AddFlags(cmd.Flags())
	return cmd
}

func (o *historyOptions) Complete(Env) {}

func (o *historyOptions) Validate() error { return o.kube.Validate() }

// revisionShown is `history REVISION`'s result: the revision, and how its
// objects differ from the revision before it (none: it is the first kept).
type revisionShown struct {
	Revision cluster.Revision     `json:"revision"`
	Previous int                  `json:"previous,omitempty"`
	Diff     []cluster.ObjectDiff `json:"diff"`
}

func (o *historyOptions) Run(ctx context.Context, env Env) error {
	g := o.g
	r := plainReporter(env, g)
	ns := o.kube.Namespace()
	kc, err := cluster.New(ctx, o.kube.Flags)
	if err != nil {
		return finish(env, g, r, "", nil, err)
	}
	revs, err := kc.Revisions(ctx, ns)
	if err != nil {
		return finish(env, g, r, "", nil, err)
	}
	if o.revision == 0 {
		if !g.JSON() && !g.Quiet {
			writeRevisions(env.Stdout, revs)
		}
		return finish(env, g, r, historySummary(ns, revs), map[string]any{"namespace": ns, "revisions": revs}, nil)
	}
	rev, objs, err := kc.RevisionObjects(ctx, ns, o.revision)
	if err != nil {
		return finish(env, g, r, "", nil, err)
	}
	shown := revisionShown{Revision: rev, Diff: []cluster.ObjectDiff{}}
	var before []cluster.Revision
	for _, p := range revs {
		if p.Number < rev.Number {
			before = append(before, p)
		}
	}
	var prevObjs []manifest.Object
	if len(before) > 0 {
		shown.Previous = before[0].Number
		if _, prevObjs, err = kc.RevisionObjects(ctx, ns, shown.Previous); err != nil {
			return finish(env, g, r, "", nil, err)
		}
	}
	if rev.ObjectsOmitted == "" {
		shown.Diff = cluster.DiffRevisions(prevObjs, objs, "revision-"+strconv.Itoa(shown.Previous), "revision-"+strconv.Itoa(rev.Number))
	}
	if !g.JSON() && !g.Quiet {
		writeRevision(env.Stdout, shown)
	}
	return finish(env, g, r, fmt.Sprintf("revision %d of namespace %s: %s, %s", rev.Number, ns, rev.Status, rev.Description), shown, nil)
}

func historySummary(ns string, revs []cluster.Revision) string {
	if len(revs) == 0 {
		return "no revision recorded in namespace " + ns
	}
	for _, r := range revs {
		if r.Status == cluster.Deployed {
			return fmt.Sprintf("%d revisions in namespace %s; deployed: revision %d", len(revs), ns, r.Number)
		}
	}
	return fmt.Sprintf("%d revisions in namespace %s; none deployed now", len(revs), ns)
}

func writeRevisions(w io.Writer, revs []cluster.Revision) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REVISION\tUPDATED\tSTATUS\tDESCRIPTION\tIMAGE\tBY")
	for _, r := range revs {
		img := ""
		if len(r.Images) > 0 {
			img = shortRef(r.Images[0])
			if n := len(r.Images) - 1; n > 0 {
				img += fmt.Sprintf(" (+%d)", n)
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.Number, r.Updated.Local().Format(time.DateTime), r.Status, r.Description, img, r.By)
	}
	_ = tw.Flush()
}

// shortRef is the image's tag with the digest's first 12 hex digits.
func shortRef(i cluster.RevisionImage) string {
	d := strings.TrimPrefix(i.Digest, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return i.Image + "@" + d
}

func writeRevision(w io.Writer, s revisionShown) {
	r := s.Revision
	fmt.Fprintf(w, "revision %d: %s (%s)\n", r.Number, r.Description, r.Status)
	if r.Reason != "" {
		fmt.Fprintf(w, "  reason:    %s\n", r.Reason)
	}
	fmt.Fprintf(w, "  applied:   %s (updated %s)\n", r.Time.Local().Format(time.DateTime), r.Updated.Local().Format(time.DateTime))
	fmt.Fprintf(w, "  by:        %s\n", r.By)
	if gh := r.By.GitHub; gh != nil && gh.URL != "" {
		fmt.Fprintf(w, "  run:       %s\n", gh.URL)
	}
	for _, i := range r.Images {
		fmt.Fprintf(w, "  image:     %s %s\n", i.Name, i.Ref())
	}
	sig := r.Signature
	if sig == "" {
		sig = "(no signature policy given)"
	}
	fmt.Fprintf(w, "  signature: %s\n", sig)
	if r.Source.Commit != "" {
		fmt.Fprintf(w, "  source:    %s %s\n", r.Source.Repository, r.Source.Commit)
	}
	fmt.Fprintf(w, "  objects:   %d (%d bytes compressed)\n", r.Objects, r.ObjectsBytes)
	if r.ObjectsOmitted != "" {
		fmt.Fprintf(w, "  objects not recorded: %s\n", r.ObjectsOmitted)
		return
	}
	if s.Previous == 0 {
		fmt.Fprintln(w, "diff: the first revision kept; every object added:")
	} else if len(s.Diff) == 0 {
		fmt.Fprintf(w, "diff against revision %d: no object changed\n", s.Previous)
	} else {
		fmt.Fprintf(w, "diff against revision %d:\n", s.Previous)
	}
	for _, d := range s.Diff {
		fmt.Fprintf(w, "%s %s\n%s", d.Ref, d.Change, d.Diff)
	}
}
