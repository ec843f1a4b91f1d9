package commands

import (
	"fmt"
	"sort"
	"strings"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/pipeline"
	"github.com/idopipe/idopipe/pkg/report"
)

// writeGitHubResult writes the release's step outputs (image, digest,
// pods-ready) to $GITHUB_OUTPUT and a Markdown job summary to
// $GITHUB_STEP_SUMMARY, when running in GitHub Actions.
func writeGitHubResult(env Env, res pipeline.Result, ns string, err error) error {
	if env.Getenv("GITHUB_ACTIONS") != "true" {
		return nil
	}
	ready := 0
	for _, p := range res.Pods {
		if p.Ready {
			ready++
		}
	}
	out := report.Outputs(map[string]string{
		"image":      res.Image,
		"digest":     res.Digest,
		"ref":        res.Ref,
		"pods-ready": fmt.Sprintf("%d/%d", ready, len(res.Pods)),
	})
	if werr := report.AppendFile(env.Getenv, "GITHUB_OUTPUT", out); werr != nil {
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
	fmt.Fprintf(&b, "| stage | seconds |\n|---|---|\n")
	stages := make([]string, 0, len(res.Stages))
	for s := range res.Stages {
		stages = append(stages, s)
	}
	order := map[string]int{"validate": 0, "build": 1, "push": 2, "verify-pull": 3, "secret": 4, "plan": 4, "apply": 5, "wait": 6}
	sort.Slice(stages, func(i, j int) bool { return order[stages[i]] < order[stages[j]] })
	for _, s := range stages {
		fmt.Fprintf(&b, "| %s | %.2f |\n", s, res.Stages[s])
	}
	if len(res.Pods) > 0 {
		fmt.Fprintf(&b, "\n**Pods in `%s`:** %d/%d Ready\n\n| Pod | Ready | Phase |\n|---|---|---|\n", ns, ready, len(res.Pods))
		for _, p := range res.Pods {
			fmt.Fprintf(&b, "| %s | %v | %s |\n", p.Name, p.Ready, p.Phase)
		}
	}
	if werr := report.AppendFile(env.Getenv, "GITHUB_STEP_SUMMARY", b.String()); werr != nil {
		return fail.Wrap(fail.Internal, werr, "", "cannot write $GITHUB_STEP_SUMMARY")
	}
	return nil
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "<", "&lt;", ">", "&gt;").Replace(s)
}
