package plugins

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// upstream is the layout of IDO 0.4.0's plugins: directory, manifest,
// the image its container runs.
var upstream = []Plugin{
	{Name: "cpuscale", Dir: "plugins/cpu_scale", Dockerfile: "plugins/cpu_scale/Dockerfile", Manifest: "plugins/cpu_scale/cpu-scale-actuator-plugin.yaml"},
	{Name: "energy", Dir: "plugins/energy", Dockerfile: "plugins/energy/Dockerfile", Manifest: "plugins/energy/energy-actuator-plugin.yaml"},
	{Name: "rdt", Dir: "plugins/rdt", Dockerfile: "plugins/rdt/Dockerfile", Manifest: "plugins/rdt/rdt-actuator-plugin.yaml"},
	{Name: "rmpod", Dir: "plugins/rm_pod", Dockerfile: "plugins/rm_pod/Dockerfile", Manifest: "plugins/rm_pod/rmpod-actuator-plugin.yaml"},
	{Name: "scaleout", Dir: "plugins/scale_out", Dockerfile: "plugins/scale_out/Dockerfile", Manifest: "plugins/scale_out/scaleout-actuator-plugin.yaml"},
}

func deployment(name string, images ...string) string {
	var cs strings.Builder
	for i, img := range images {
		cs.WriteString("        - name: c" + string(rune('0'+i)) + "\n          image: " + img + "\n")
	}
	if len(images) == 0 {
		cs.WriteString("        []\n")
	}
	return "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: " + name + "\nspec:\n  selector:\n    matchLabels: {app: x}\n  template:\n    metadata:\n      labels: {app: x}\n    spec:\n      containers:\n" + cs.String()
}

func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, body := range files {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// upstreamLayout writes a checkout laid out like upstream's into a temp dir.
func upstreamLayout(t *testing.T) string {
	root := t.TempDir()
	files := map[string]string{"Dockerfile": "FROM scratch\n", "plugins/README.md": "the plugins\n", "plugins/go.mod": "module x\n"}
	for _, p := range upstream {
		files[p.Dockerfile] = "FROM scratch\n"
		files[p.Manifest] = deployment(p.Name+"-actuator", "127.0.0.1:5000/"+p.Name+":0.4.0")
	}
	// Shared code without a Dockerfile or manifest is no plugin, and no note.
	files["plugins/common/common.go"] = "package common\n"
	write(t, root, files)
	return root
}

func TestDiscoverUpstreamLayout(t *testing.T) {
	got, notes, err := Discover(upstreamLayout(t), "planner")
	if err != nil || len(notes) != 0 {
		t.Fatalf("Discover: %v, notes %q", err, notes)
	}
	if !reflect.DeepEqual(got, upstream) {
		t.Errorf("Discover found\n%+v\nwant\n%+v", got, upstream)
	}
}

// The test checkout the e2e tests release is laid out the same way.
func TestDiscoverTestdataCheckout(t *testing.T) {
	got, notes, err := Discover(filepath.Join("..", "..", "testdata", "ido-checkout"))
	if err != nil || len(notes) != 0 {
		t.Fatalf("Discover: %v, notes %q", err, notes)
	}
	if !reflect.DeepEqual(got, upstream) {
		t.Errorf("Discover found\n%+v\nwant\n%+v", got, upstream)
	}
}

func TestDiscoverNoPlugins(t *testing.T) {
	got, notes, err := Discover(t.TempDir())
	if err != nil || got != nil || notes != nil {
		t.Errorf("a checkout without plugins/: %v %q %v", got, notes, err)
	}
}

func TestDiscoverBadLayouts(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		note  string
	}{
		{"dockerfile without manifest", map[string]string{"plugins/lone/Dockerfile": "FROM scratch\n"},
			"plugins/lone/Dockerfile has no *-plugin.yaml manifest beside it: skipped; add the plugin's manifest there"},
		{"manifest without dockerfile", map[string]string{"plugins/lone/lone-actuator-plugin.yaml": deployment("lone", "lone:1")},
			"plugins/lone/lone-actuator-plugin.yaml has no Dockerfile beside it: skipped; add plugins/lone/Dockerfile"},
		{"no image", map[string]string{"plugins/x/Dockerfile": "FROM scratch\n", "plugins/x/x-plugin.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"},
			"plugins/x/x-plugin.yaml runs no container image (or none that parses), so it names no plugin image: skipped; give its container the plugin's image"},
		{"several images", map[string]string{"plugins/x/Dockerfile": "FROM scratch\n", "plugins/x/x-plugin.yaml": deployment("x", "127.0.0.1:5000/alpha:1", "127.0.0.1:5000/beta:1")},
			"plugins/x/x-plugin.yaml runs several images (alpha, beta), so it names no one plugin image: skipped; add it by hand as an extra image"},
		{"several manifests", map[string]string{"plugins/x/Dockerfile": "FROM scratch\n", "plugins/x/a-plugin.yaml": deployment("a", "a:1"), "plugins/x/b-plugin.yml": deployment("b", "b:1")},
			"plugins/x has several manifests (a-plugin.yaml, b-plugin.yml): skipped; keep one *-plugin.yaml per plugin"},
		{"not yaml", map[string]string{"plugins/x/Dockerfile": "FROM scratch\n", "plugins/x/x-plugin.yaml": "kind: [\n"},
			"plugins/x/x-plugin.yaml: "},
		{"the main image's name", map[string]string{"plugins/x/Dockerfile": "FROM scratch\n", "plugins/x/x-plugin.yaml": deployment("x", "127.0.0.1:5000/planner:0.4.0")},
			`plugins/x/x-plugin.yaml runs image "planner", as the main image does: skipped; give each plugin's container an image name of its own`},
		{"two plugins, one image", map[string]string{"plugins/a/Dockerfile": "FROM scratch\n", "plugins/a/a-plugin.yaml": deployment("a", "same:1"),
			"plugins/b/Dockerfile": "FROM scratch\n", "plugins/b/b-plugin.yaml": deployment("b", "same:1")},
			`plugins/b/b-plugin.yaml runs image "same", as plugins/a does: skipped; give each plugin's container an image name of its own`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := upstreamLayout(t)
			write(t, root, c.files)
			got, notes, err := Discover(root, "planner")
			if err != nil {
				t.Fatal(err)
			}
			want := len(upstream)
			if c.name == "two plugins, one image" {
				want++ // plugins/a stays
			}
			if len(got) != want {
				t.Errorf("found %d plugins, want the %d good ones: %+v", len(got), want, got)
			}
			if len(notes) != 1 || !strings.HasPrefix(notes[0], c.note) || strings.Contains(notes[0], "\n") {
				t.Errorf("notes %q, want one line starting %q", notes, c.note)
			}
		})
	}
}

func TestDiscoverUnreadable(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{"plugins": "a file, not a directory\n"})
	if _, _, err := Discover(root); err == nil {
		t.Error("a plugins file that is not a directory gave no error")
	}
}
