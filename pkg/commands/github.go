package commands

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/pipeline"
	"github.com/idopipe/idopipe/pkg/report"
)

// writeGitHubResult writes the release's step outputs (image, digest,
// pods-ready) to $GITHUB_OUTPUT and a Markdown job summary to
// $GITHUB_STEP_SUMMARY, when running in GitHub Actions.
func writeGitHubResult(g *options.GlobalOptions, res pipeline.Result, ns string, err error) error {
	if !g.Actions.Enabled {
		return nil
	}
	ready := 0
	for _, p := range res.Pods {
		if p.Ready {
			ready++
		}
	}
	revision := ""
	if res.Revision != nil {
		revision = fmt.Sprint(res.Revision.Number)
	}
	bundle := ""
	if len(res.Signed) > 0 && res.Signed[0] != nil && len(res.Signed[0].Bundles) > 0 {
		bundle = res.Signed[0].Bundles[0] // the pushed digest's signature
	}
	out := report.Outputs(map[string]string{
		"bundle":     bundle,
		"image":      res.Image,
		"digest":     res.Digest,
		"ref":        res.Ref,
		"pods-ready": fmt.Sprintf("%d/%d", ready, len(res.Pods)),
		"revision":   revision,
	})
	if werr := report.AppendFile(g.Actions.Output, out); werr != nil {
		return fail.Wrap(fail.Internal, werr, "", "cannot write $GITHUB_OUTPUT")
	}
	var b strings.Builder
	status := "✅ released"
	if err != nil {
		status = "❌ failed: " + fail.OneLine(err.Error())
	}
	fmt.Fprintf(&b, "## idopipe release\n\n%s\n\n", mdEscape(status))
	if res.Ref != "" {
		fmt.Fprintf(&b, "**Image:** `%s`\n\n", res.Ref)
	}
	if r := res.Revision; r != nil {
		fmt.Fprintf(&b, "**Revision:** %d in `%s` (%s)\n\n", r.Number, ns, r.Status)
	}
	if rb := res.RolledBack; rb != nil {
		if rb.Error == "" {
			fmt.Fprintf(&b, "**Rolled back** to revision %d (as revision %d): `%s` runs again\n\n", rb.To, rb.Revision, rb.Ref)
		} else {
			fmt.Fprintf(&b, "**Rollback** to revision %d failed too: %s\n\n", rb.To, mdEscape(fail.OneLine(rb.Error)))
		}
	}
	fmt.Fprintf(&b, "| stage | seconds |\n|---|---|\n")
	for _, s := range stageRows(res.Stages) {
		fmt.Fprintf(&b, "| %s | %.2f |\n", s, res.Stages[s])
	}
	if len(res.Pods) > 0 {
		fmt.Fprintf(&b, "\n**Pods in `%s`:** %d/%d Ready\n\n| Pod | Ready | Phase |\n|---|---|---|\n", ns, ready, len(res.Pods))
		for _, p := range res.Pods {
			fmt.Fprintf(&b, "| %s | %v | %s |\n", p.Name, p.Ready, p.Phase)
		}
	}
	if werr := report.AppendFile(g.Actions.Summary, b.String()); werr != nil {
		return fail.Wrap(fail.Internal, werr, "", "cannot write $GITHUB_STEP_SUMMARY")
	}
	return nil
}

// stageRows are the stages that ran, in the pipeline's order
// (pipeline.StageOrder), then any the table does not name, by name.
func stageRows(times map[string]float64) []string {
	var out []string
	for _, s := range pipeline.StageOrder() {
		if _, ok := times[s]; ok {
			out = append(out, s)
		}
	}
	var rest []string
	for s := range times {
		if !slices.Contains(out, s) {
			rest = append(rest, s)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "<", "&lt;", ">", "&gt;").Replace(s)
}
