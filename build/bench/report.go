package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// stats summarise the successful samples of one tool in one case.
type stats struct {
	Tool      string             `json:"tool"`
	Runs      int                `json:"runs"`
	Failed    int                `json:"failed"`
	Median    float64            `json:"medianSeconds"`
	Min       float64            `json:"minSeconds"`
	Max       float64            `json:"maxSeconds"`
	CPU       float64            `json:"medianCpuSeconds"`
	RSSMedian float64            `json:"medianPeakRssMiB"`
	RSSMax    float64            `json:"peakRssMiB"`
	Ratio     *float64           `json:"idopipeRatio,omitempty"` // idopipe median / this tool's median
	RatioBase string             `json:"ratioOf,omitempty"`      // the idopipe variant of Ratio
	Stages    map[string]float64 `json:"medianStageSeconds,omitempty"`
	Samples   []sample           `json:"samples"`
}

func summarise(tool string, ss []sample) stats {
	st := stats{Tool: tool, Samples: ss}
	var secs, rss, cpu []float64
	stageVals := map[string][]float64{}
	for _, s := range ss {
		if !s.OK {
			st.Failed++
			continue
		}
		secs = append(secs, s.Seconds)
		rss = append(rss, float64(s.RSSKiB)/1024)
		cpu = append(cpu, s.CPU)
		for k, v := range s.Stages {
			stageVals[k] = append(stageVals[k], v)
		}
	}
	st.Runs = len(secs)
	if len(secs) == 0 {
		return st
	}
	st.Median, st.Min, st.Max = median(secs), slices.Min(secs), slices.Max(secs)
	st.RSSMedian, st.RSSMax = median(rss), slices.Max(rss)
	st.CPU = median(cpu)
	if len(stageVals) > 0 {
		st.Stages = map[string]float64{}
		for k, v := range stageVals {
			st.Stages[k] = median(v)
		}
	}
	return st
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

type caseResult struct {
	ID    string  `json:"id"`
	Title string  `json:"title"`
	Note  string  `json:"note,omitempty"`
	Tools []stats `json:"tools"`
}

type target struct {
	Target   string  `json:"target"`
	Measured string  `json:"measured"`
	Value    float64 `json:"value"`
	Limit    float64 `json:"limit"`
	Met      *bool   `json:"met"` // nil: not measured
}

type microResult struct {
	Package     string  `json:"package"`
	Name        string  `json:"name"`
	Iterations  int64   `json:"iterations"`
	NsPerOp     float64 `json:"nsPerOp"`
	BytesPerOp  int64   `json:"bytesPerOp"`
	AllocsPerOp int64   `json:"allocsPerOp"`
}

type machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpuModel"`
	MemTotal string `json:"memTotal"`
	GOOS     string `json:"goos"`
	GOARCH   string `json:"goarch"`
}

type output struct {
	Date     time.Time         `json:"date"`
	LoadAvg  [2]string         `json:"loadavgBeforeAfter"`
	Seconds  float64           `json:"totalSeconds"`
	Machine  machine           `json:"machine"`
	Versions map[string]string `json:"versions"`
	Image    *bigImage         `json:"image,omitempty"`
	Groups   []string          `json:"groups"`
	Cases    []caseResult      `json:"cases"`
	Targets  []target          `json:"targets"`
	Micro    []microResult     `json:"microbenchmarks,omitempty"`
	Notes    []string          `json:"notes,omitempty"`
}

func (b *bench) caseResults() []caseResult {
	var out []caseResult
	for _, c := range cases {
		res := b.results[c.ID]
		if res == nil {
			continue
		}
		cr := caseResult{ID: c.ID, Title: c.Title, Note: c.Note}
		for _, tool := range c.Tools {
			if ss, ok := res[tool]; ok {
				cr.Tools = append(cr.Tools, summarise(tool, ss))
			}
		}
		byName := map[string]*stats{}
		for i := range cr.Tools {
			byName[cr.Tools[i].Tool] = &cr.Tools[i]
		}
		for i := range cr.Tools {
			t := &cr.Tools[i]
			base := "idopipe"
			if b, ok := c.Base[t.Tool]; ok {
				base = b
			}
			ido := byName[base]
			if strings.HasPrefix(t.Tool, "idopipe") || ido == nil || ido.Runs == 0 || t.Runs == 0 || t.Median == 0 {
				continue
			}
			r := ido.Median / t.Median
			t.Ratio, t.RatioBase = &r, base
		}
		out = append(out, cr)
	}
	return out
}

func find(cs []caseResult, id, tool string) *stats {
	for _, c := range cs {
		if c.ID != id {
			continue
		}
		for i := range c.Tools {
			if c.Tools[i].Tool == tool && c.Tools[i].Runs > 0 {
				return &c.Tools[i]
			}
		}
	}
	return nil
}

func targets(cs []caseResult) []target {
	var out []target
	add := func(name string, v float64, limit float64, ok bool, measured string, format string) {
		t := target{Target: name, Limit: limit}
		if ok {
			met := v <= limit
			t.Value, t.Met, t.Measured = v, &met, fmt.Sprintf(format, v)+measured
		} else {
			t.Measured = "not measured"
		}
		out = append(out, t)
	}
	ratio := func(id, peer string) (float64, bool) {
		if s := find(cs, id, peer); s != nil && s.Ratio != nil {
			return *s.Ratio, true
		}
		return 0, false
	}
	med := func(id string) (float64, bool) {
		if s := find(cs, id, "idopipe"); s != nil {
			return s.Median, true
		}
		return 0, false
	}
	r, ok := ratio("push-1g", "crane")
	add("1 GiB push ≤ 1.0× crane", r, 1.0, ok, "", "%.2f×")
	if s := find(cs, "push-1g", "idopipe"); s != nil {
		add("peak RSS during the 1 GiB push ≤ 100 MiB", s.RSSMax, 100, true, " (max of runs)", "%.1f MiB")
	} else {
		add("peak RSS during the 1 GiB push ≤ 100 MiB", 0, 100, false, "", "")
	}
	v, ok := med("repush")
	add("unchanged re-push ≤ 0.3 s", v, 0.3, ok, " (median)", "%.3f s")
	r, ok = ratio("release-noop", "script")
	add("no-op release ≤ 0.5× the script", r, 0.5, ok, "", "%.2f×")
	v, ok = med("release-noop")
	add("no-op release ≤ 2 s", v, 2, ok, " (median)", "%.3f s")
	v, ok = med("build-noop-large")
	add("unchanged rebuild of a planner-sized image < 1 s (issue 14)", v, 1, ok, " (median)", "%.3f s")
	r, ok = ratio("build-noop-large", "buildctl")
	add("unchanged rebuild of a planner-sized image ≤ 1.0× buildctl, same settings", r, 1.0, ok, "", "%.2f×")
	if s := find(cs, "bad-token", "idopipe"); s != nil {
		add("bad token fails in < 2 s", s.Max, 2, true, fmt.Sprintf(" (max; median %.3f s)", s.Median), "%.3f s")
	} else {
		add("bad token fails in < 2 s", 0, 2, false, "", "")
	}
	r, ok = ratio("apply-first", "kubectl script")
	add("first apply ≤ 1.0× kubectl (same steps)", r, 1.0, ok, "", "%.2f×")
	r, ok = ratio("apply-noop", "kubectl script")
	add("no-op apply ≤ 1.0× kubectl (same steps)", r, 1.0, ok, "", "%.2f×")
	r, ok = ratio("apply-first", "kubectl apply")
	add("first apply ≤ 1.0× bare `kubectl apply --server-side`", r, 1.0, ok, "", "%.2f×")
	r, ok = ratio("apply-noop", "kubectl apply")
	add("no-op apply ≤ 1.0× bare `kubectl apply --server-side`", r, 1.0, ok, "", "%.2f×")
	// What --sign and --verify-key add to a release: the signed push and
	// the verify-pull with --key, less the same without.
	signed, unsigned := find(cs, "sign", "idopipe"), find(cs, "sign", "idopipe (unsigned)")
	checked, unchecked := find(cs, "verify-signature", "idopipe"), find(cs, "verify-signature", "idopipe (unsigned)")
	if signed != nil && unsigned != nil && checked != nil && unchecked != nil {
		add("signing + verifying add < 1 s to a release", signed.Median-unsigned.Median+checked.Median-unchecked.Median, 1, true, " (medians)", "%.3f s")
	} else {
		add("signing + verifying add < 1 s to a release", 0, 1, false, "", "")
	}
	return out
}

func machineInfo() machine {
	m := machine{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && k == "MemTotal" {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				m.MemTotal = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	return m
}

func (b *bench) write() error {
	cs := b.caseResults()
	o := output{
		Date: time.Now().UTC().Truncate(time.Second), Seconds: math.Round(time.Since(b.started).Seconds()),
		Machine: machineInfo(), Versions: map[string]string{}, Groups: b.groups, Cases: cs,
		Targets: targets(cs), Micro: b.micro, Notes: b.notes, LoadAvg: b.load,
	}
	if b.img.Digest != "" {
		o.Image = &b.img
	}
	for _, v := range b.versions {
		o.Versions[v[0]] = v[1]
	}
	if err := os.MkdirAll(b.cfg.Out, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(o, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.cfg.Out, "bench.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	md := b.markdown(o)
	if err := os.WriteFile(filepath.Join(b.cfg.Out, "bench.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	b.logf("wrote %s and %s", filepath.Join(b.cfg.Out, "bench.md"), filepath.Join(b.cfg.Out, "bench.json"))
	return nil
}

func (b *bench) markdown(o output) string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	p("# idopipe benchmarks\n\n")
	p("`make bench`, %s, %.0f s in all. Machine: %d CPUs (%s), %s RAM, %s/%s. ", o.Date.Format("2006-01-02 15:04 MST"), o.Seconds, o.Machine.CPUs, o.Machine.CPUModel, o.Machine.MemTotal, o.Machine.GOOS, o.Machine.GOARCH)
	p("Everything runs on this one machine against the local stack (buildkitd + runc, distribution registry with TLS and GHCR's token flow on 127.0.0.1, a one-node cluster: kube-apiserver + etcd, kube-controller-manager, kube-scheduler and a kubelet on containerd + runc, so deploys really pull and start containers).\n\n")
	p("Each case ran %d times (bad token: %d; re-push: %d after each push); within a run the tools take turns and the order rotates between runs. ", b.cfg.Runs, b.cfg.BadRuns, b.cfg.Repush)
	p("Wall time is around the whole process; peak RSS is wait4's ru_maxrss (as GNU time's %%M: the largest process of the tree, so for scripts the largest of their commands). ")
	p("CPU is user + system time of the process and its children (servers excluded: buildkitd, the registry and the API server do most of the work). ")
	p("Ratio is idopipe's median ÷ the tool's median: below 1 idopipe is faster. ")
	p("Load average before / after: %s / %s (the machine is not reserved: anything else running shows up as noise).\n\n", o.LoadAvg[0], o.LoadAvg[1])
	if o.Image != nil {
		p("Generated image: %d layers, %.1f MiB of layer blobs, %s.\n\n", o.Image.Layers, float64(o.Image.Bytes)/(1<<20), o.Image.Digest)
	}
	p("| case | tool | runs | median s | min s | max s | CPU s (median) | peak RSS MiB (median / max) | idopipe ÷ tool |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range o.Cases {
		for i, t := range c.Tools {
			name := ""
			if i == 0 {
				name = "**" + c.ID + "**"
			}
			runs := strconv.Itoa(t.Runs)
			if t.Failed > 0 {
				runs += fmt.Sprintf(" (+%d failed)", t.Failed)
			}
			ratio := "—"
			if t.Ratio != nil {
				ratio = fmt.Sprintf("%.2f×", *t.Ratio)
				if t.RatioBase != "idopipe" {
					ratio += " (" + t.RatioBase + ")"
				}
			}
			if t.Runs == 0 {
				p("| %s | %s | %s | – | – | – | – | – | – |\n", name, t.Tool, runs)
				continue
			}
			p("| %s | %s | %s | %.3f | %.3f | %.3f | %.2f | %.1f / %.1f | %s |\n", name, t.Tool, runs, t.Median, t.Min, t.Max, t.CPU, t.RSSMedian, t.RSSMax, ratio)
		}
	}
	p("\nCases:\n\n")
	for _, c := range o.Cases {
		p("- **%s**: %s.", c.ID, c.Title)
		if c.Note != "" {
			p(" %s.", c.Note)
		}
		p("\n")
	}
	p("\n## Targets (issue 7)\n\n| target | measured | met |\n|---|---|---|\n")
	for _, t := range o.Targets {
		met := "–"
		if t.Met != nil {
			met = map[bool]string{true: "yes", false: "**no**"}[*t.Met]
		}
		p("| %s | %s | %s |\n", t.Target, t.Measured, met)
	}
	// idopipe's own stage times, where it reports them.
	var stageRows []string
	for _, c := range o.Cases {
		for _, t := range c.Tools {
			if t.Tool != "idopipe" || len(t.Stages) < 2 {
				continue
			}
			var parts []string
			for _, st := range []string{"validate", "build", "push", "verify-pull", "secret", "apply", "wait"} {
				if v, ok := t.Stages[st]; ok {
					parts = append(parts, fmt.Sprintf("%s %.3f", st, v))
				}
			}
			stageRows = append(stageRows, fmt.Sprintf("| %s | %.3f | %s |", c.ID, t.Median, strings.Join(parts, ", ")))
		}
	}
	if len(stageRows) > 0 {
		p("\n## idopipe's stages (median seconds, from `-o json`)\n\n| case | total | stages |\n|---|---:|---|\n%s\n", strings.Join(stageRows, "\n"))
	}
	if len(o.Micro) > 0 {
		p("\n## Go microbenchmarks\n\n`go test -run XXX -bench . -benchmem ./pkg/manifest ./pkg/report`\n\n| package | benchmark | ns/op | B/op | allocs/op |\n|---|---|---:|---:|---:|\n")
		for _, m := range o.Micro {
			p("| %s | %s | %.0f | %d | %d |\n", m.Package, m.Name, m.NsPerOp, m.BytesPerOp, m.AllocsPerOp)
		}
	}
	p("\n## Versions\n\n| tool | version |\n|---|---|\n")
	for _, v := range b.versions {
		p("| %s | %s |\n", v[0], strings.ReplaceAll(v[1], "|", "\\|"))
	}
	if len(o.Notes) > 0 {
		p("\n## Notes\n\n")
		for _, n := range o.Notes {
			p("- %s\n", n)
		}
	}
	return w.String()
}

var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+(\d+)\s+([\d.]+) ns/op(?:\s+[\d.]+ MB/s)?(?:\s+(\d+) B/op\s+(\d+) allocs/op)?`)

// groupMicro runs the Go microbenchmarks and keeps their figures.
func (b *bench) groupMicro() error {
	argv := []string{"go", "test", "-run", "XXX", "-bench", ".", "-benchmem", "-benchtime", b.cfg.MicroTime, "./pkg/manifest", "./pkg/report"}
	b.logf("  %s", strings.Join(argv, " "))
	x := exec.CommandContext(b.ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	x.Stdout, x.Stderr = &out, &out
	err := x.Run()
	_ = os.WriteFile(filepath.Join(b.logs, "micro.log"), out.Bytes(), 0o644)
	pkg := ""
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(rest, "github.com/idopipe/idopipe/")
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		r := microResult{Package: pkg, Name: m[1]}
		r.Iterations, _ = strconv.ParseInt(m[2], 10, 64)
		r.NsPerOp, _ = strconv.ParseFloat(m[3], 64)
		r.BytesPerOp, _ = strconv.ParseInt(m[4], 10, 64)
		r.AllocsPerOp, _ = strconv.ParseInt(m[5], 10, 64)
		b.micro = append(b.micro, r)
		b.logf("  %-10s %-40s %10.0f ns/op", pkg, r.Name, r.NsPerOp)
	}
	if err != nil {
		return fmt.Errorf("go test -bench: %v\n%s", err, tail(filepath.Join(b.logs, "micro.log"), 15))
	}
	return nil
}
