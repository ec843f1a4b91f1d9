package commands

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// checkout copies testdata/ido-checkout (the plugins laid out as upstream
// IDO 0.4.0 lays them out) with the planner's files into a temp dir.
func checkout(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ido")
	src := filepath.Join("..", "..", "testdata", "ido-checkout")
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"Dockerfile", "artefacts/deploy/manifest.yaml", "artefacts/intents_crds_v1alpha1.yaml"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// released is what `release --config` takes from the file: its extra
// images and manifests.
func released(t *testing.T, config string) (extras, manifests []string) {
	t.Helper()
	root := NewRoot(Env{Getenv: func(string) string { return "" }, Stdout: os.Stderr, Stderr: os.Stderr})
	rel, _, err := root.Find([]string{"release"})
	if err != nil {
		t.Fatal(err)
	}
	if err := applyConfigFile(rel, config, true); err != nil {
		t.Fatalf("the config init wrote is refused: %v", err)
	}
	extras, _ = rel.Flags().GetStringArray("extra-image")
	manifests, _ = rel.Flags().GetStringArray("manifest")
	return extras, manifests
}

var upstreamPlugins = []struct{ name, dockerfile, manifest string }{
	{"cpuscale", "plugins/cpu_scale/Dockerfile", "plugins/cpu_scale/cpu-scale-actuator-plugin.yaml"},
	{"energy", "plugins/energy/Dockerfile", "plugins/energy/energy-actuator-plugin.yaml"},
	{"rdt", "plugins/rdt/Dockerfile", "plugins/rdt/rdt-actuator-plugin.yaml"},
	{"rmpod", "plugins/rm_pod/Dockerfile", "plugins/rm_pod/rmpod-actuator-plugin.yaml"},
	{"scaleout", "plugins/scale_out/Dockerfile", "plugins/scale_out/scaleout-actuator-plugin.yaml"},
}

// TestInitPlugins: on a checkout laid out like upstream's, init writes
// the five plugins as extra images named for the images their manifests
// run, and their manifests: active with --plugins, commented out without.
func TestInitPlugins(t *testing.T) {
	dir := checkout(t)
	out := filepath.Join(t.TempDir(), "idopipe.yaml")
	code, stdout, errs := run(t, nil, "init", "--source", dir, "--out", out, "--plugins")
	if code != 0 || errs != "" || !strings.Contains(stdout, "with 5 plugins (cpuscale, energy, rdt, rmpod, scaleout)") {
		t.Fatalf("init --plugins: %d %q %q", code, stdout, errs)
	}
	extras, manifests := released(t, out)
	var wantExtras []string
	wantManifests := []string{filepath.Join(dir, "artefacts/deploy/manifest.yaml")}
	for _, p := range upstreamPlugins {
		wantExtras = append(wantExtras, "name="+p.name+",source="+dir+",file="+filepath.Join(dir, p.dockerfile)+",version=0.4.0")
		wantManifests = append(wantManifests, filepath.Join(dir, p.manifest))
	}
	if !slices.Equal(extras, wantExtras) {
		t.Errorf("extra images\n%q\nwant\n%q", extras, wantExtras)
	}
	if !slices.Equal(manifests, wantManifests) {
		t.Errorf("manifests\n%q\nwant\n%q", manifests, wantManifests)
	}

	// Without --plugins they are there, commented out.
	out2 := filepath.Join(t.TempDir(), "idopipe.yaml")
	code, stdout, errs = run(t, nil, "init", "--source", dir, "--out", out2, "-o", "json")
	var res struct {
		Result initResult `json:"result"`
	}
	if code != 0 || errs != "" || json.Unmarshal([]byte(stdout), &res) != nil ||
		!slices.Equal(res.Result.Plugins, []string{"cpuscale", "energy", "rdt", "rmpod", "scaleout"}) || res.Result.Active {
		t.Fatalf("init -o json: %d %q %q", code, stdout, errs)
	}
	extras, manifests = released(t, out2)
	if len(extras) != 0 || !slices.Equal(manifests, wantManifests[:1]) {
		t.Errorf("without --plugins: extra images %q, manifests %q", extras, manifests)
	}
	b, _ := os.ReadFile(out2)
	for _, p := range upstreamPlugins {
		for _, want := range []string{"  # - name: " + p.name + "\n", "  # - " + filepath.Join(dir, p.manifest) + "\n"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("init without --plugins wrote no %q:\n%s", want, b)
			}
		}
	}
}

// TestInitPluginNotes: a plugin directory that cannot be used is one
// note on stderr and in the file, the others are written.
func TestInitPluginNotes(t *testing.T) {
	dir := checkout(t)
	if err := os.Remove(filepath.Join(dir, "plugins/rdt/rdt-actuator-plugin.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plugins/energy/energy-actuator-plugin.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: energy\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "idopipe.yaml")
	code, stdout, errs := run(t, nil, "init", "--source", dir, "--out", out, "--plugins")
	if code != 0 || !strings.Contains(stdout, "with 3 plugins (cpuscale, rmpod, scaleout)") {
		t.Fatalf("init: %d %q %q", code, stdout, errs)
	}
	want := []string{
		"note: plugins/energy/energy-actuator-plugin.yaml runs no container image",
		"note: plugins/rdt/Dockerfile has no *-plugin.yaml manifest beside it: skipped",
	}
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	if len(lines) != len(want) {
		t.Fatalf("notes:\n%s", errs)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("note %d: %q, want %q…", i, lines[i], w)
		}
	}
	b, _ := os.ReadFile(out)
	if !strings.Contains(string(b), "# NOTE: plugins/rdt/Dockerfile has no *-plugin.yaml manifest beside it") {
		t.Errorf("the file lacks the note:\n%s", b)
	}
	if extras, _ := released(t, out); len(extras) != 3 {
		t.Errorf("extra images %q", extras)
	}
}
