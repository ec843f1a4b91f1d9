// Package plugins finds the actuator plugins of an Intent Driven
// Orchestration checkout. Upstream keeps each plugin in plugins/<dir>/: its
// Dockerfile (built with the repository root as the context) and, beside
// it, its Kubernetes manifest named *-plugin.yaml, whose container runs
// the plugin's image as 127.0.0.1:5000/<name>:<version>. The image name a
// release must push, so that the manifest's container gets it, is that
// <name>, read from the manifest (it is not the directory's name:
// plugins/cpu_scale runs cpuscale).
package plugins

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/idopipe/idopipe/pkg/manifest"
	"github.com/idopipe/idopipe/pkg/names"
)

// Dir is where a checkout keeps its plugins.
const Dir = "plugins"

// Plugin is one actuator plugin of a checkout. Paths are relative to the
// checkout's root, with forward slashes.
type Plugin struct {
	Name       string // the image name its manifest runs, e.g. cpuscale
	Dir        string // plugins/cpu_scale
	Dockerfile string // plugins/cpu_scale/Dockerfile
	Manifest   string // plugins/cpu_scale/cpu-scale-actuator-plugin.yaml
}

// Discover lists the plugins of the checkout at root, by directory name.
// A plugin directory that cannot be used (a Dockerfile without a manifest
// beside it, a manifest without a Dockerfile, a manifest that runs no
// image, several images, or one named like another plugin's or like
// reserved) is left out with a one-line note saying why and what to fix.
// A checkout without a plugins directory has no plugins and no notes. The
// error is for a plugins directory that cannot be read.
func Discover(root string, reserved ...string) ([]Plugin, []string, error) {
	entries, err := os.ReadDir(filepath.Join(root, Dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", filepath.Join(root, Dir), err)
	}
	var found []Plugin
	var notes []string
	taken := map[string]string{}
	for _, r := range reserved {
		taken[r] = "the main image"
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p, note := inspect(root, e.Name())
		if note != "" {
			notes = append(notes, note)
			continue
		}
		if p.Name == "" {
			continue // not a plugin: neither a Dockerfile nor a manifest
		}
		if other, ok := taken[p.Name]; ok {
			notes = append(notes, fmt.Sprintf("%s runs image %q, as %s does: skipped; give each plugin's container an image name of its own", p.Manifest, p.Name, other))
			continue
		}
		taken[p.Name] = p.Dir
		found = append(found, p)
	}
	return found, notes, nil
}

// inspect reads plugins/<dir>: a usable plugin, a note saying why it is
// not one, or neither when the directory holds no plugin at all.
func inspect(root, dir string) (Plugin, string) {
	rel := Dir + "/" + dir
	abs := filepath.Join(root, Dir, dir)
	_, err := os.Stat(filepath.Join(abs, "Dockerfile"))
	hasDockerfile := err == nil
	var manifests []string
	for _, pat := range []string{"*-plugin.yaml", "*-plugin.yml"} {
		m, _ := filepath.Glob(filepath.Join(abs, pat))
		manifests = append(manifests, m...)
	}
	sort.Strings(manifests)
	switch {
	case !hasDockerfile && len(manifests) == 0:
		return Plugin{}, ""
	case !hasDockerfile:
		return Plugin{}, fmt.Sprintf("%s/%s has no Dockerfile beside it: skipped; add %s/Dockerfile", rel, filepath.Base(manifests[0]), rel)
	case len(manifests) == 0:
		return Plugin{}, fmt.Sprintf("%s/Dockerfile has no *-plugin.yaml manifest beside it: skipped; add the plugin's manifest there", rel)
	case len(manifests) > 1:
		return Plugin{}, fmt.Sprintf("%s has several manifests (%s): skipped; keep one *-plugin.yaml per plugin", rel, baseNames(manifests))
	}
	p := Plugin{Dir: rel, Dockerfile: rel + "/Dockerfile", Manifest: rel + "/" + filepath.Base(manifests[0])}
	objs, err := manifest.ReadFile(manifests[0])
	if err != nil {
		return Plugin{}, fmt.Sprintf("%s: %s: skipped", p.Manifest, oneLine(err.Error()))
	}
	images := manifest.ImageNames(objs)
	switch len(images) {
	case 0:
		return Plugin{}, fmt.Sprintf("%s runs no container image (or none that parses), so it names no plugin image: skipped; give its container the plugin's image", p.Manifest)
	case 1:
	default:
		return Plugin{}, fmt.Sprintf("%s runs several images (%s), so it names no one plugin image: skipped; add it by hand as an extra image", p.Manifest, strings.Join(images, ", "))
	}
	if err := names.ImageName("image", images[0]); err != nil {
		return Plugin{}, fmt.Sprintf("%s: %s: skipped", p.Manifest, oneLine(err.Error()))
	}
	p.Name = images[0]
	return p, ""
}

func baseNames(paths []string) string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return strings.Join(out, ", ")
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
