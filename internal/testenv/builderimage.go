package testenv

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/idopipe/idopipe/pkg/buildkitd/kube"
)

// BuilderImage is where the node finds a builder's default image: the
// docker.io name users get, which the node's docker.io mirror serves.
const BuilderImage = kube.DefaultImage

// PushBuilderImage makes the image a builder in the stack's cluster runs
// and pushes it to the node's docker.io mirror as moby/buildkit:<pinned
// version>, so `idopipe buildkit create --kubernetes` with its default
// image runs on the node as it would pull from Docker Hub elsewhere. There
// is no Docker Hub here: the image holds the stack's own buildkitd and
// buildctl (the pinned BuildKit, static) and the host's runc with the
// shared libraries it links. It returns the image's digest reference in
// the mirror.
func (s *Stack) PushBuilderImage(ctx context.Context) (string, error) {
	if s.Mirror == nil {
		return "", errors.New("testenv: the builder image goes to the node's mirror: start the stack with a node")
	}
	dir := filepath.Join(s.Dir, "builder-image")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		if runc, err = exec.LookPath("/usr/sbin/runc"); err != nil {
			return "", fmt.Errorf("the builder image needs runc on the host (Debian: apt-get install runc): %w", err)
		}
	}
	files := map[string]string{ // path in the image → file on the host
		"usr/bin/buildkitd": filepath.Join(s.Tools, "buildkitd"),
		"usr/bin/buildctl":  filepath.Join(s.Tools, "buildctl"),
		"usr/sbin/runc":     runc,
	}
	libs, err := sharedLibraries(ctx, runc)
	if err != nil {
		return "", err
	}
	for _, l := range libs {
		files[strings.TrimPrefix(l, "/")] = l
	}
	tarPath := filepath.Join(dir, "layer.tar")
	if err := writeImageTar(tarPath, files, []string{"tmp/", "etc/", "etc/buildkit/", "run/", "var/", "var/lib/", "var/lib/buildkit/"}); err != nil {
		return "", err
	}
	layer, err := tarball.LayerFromFile(tarPath)
	if err != nil {
		return "", err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", err
	}
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: "amd64", OS: "linux",
		Config: v1.Config{
			Entrypoint: []string{"buildkitd"},
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: mustDiffIDs(layer)},
	})
	if err != nil {
		return "", err
	}
	repo := strings.TrimPrefix(BuilderImage, "moby/")
	tag, err := name.NewTag(s.Mirror.Host + "/moby/" + repo)
	if err != nil {
		return "", err
	}
	client, err := s.Mirror.HTTPClient()
	if err != nil {
		return "", err
	}
	if err := remote.Write(tag, img, remote.WithContext(ctx), remote.WithTransport(client.Transport.(*http.Transport))); err != nil {
		return "", fmt.Errorf("push the builder image to the mirror: %w", err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return tag.Context().Name() + "@" + d.String(), nil
}

var lddPath = regexp.MustCompile(`(?m)(?:=>\s*)?(/\S+)\s+\(0x`)

// sharedLibraries lists the libraries bin links (ldd), the dynamic
// loader included; none for a static binary.
func sharedLibraries(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", bin).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %v: %s", bin, err, out)
	}
	var libs []string
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		libs = append(libs, m[1])
	}
	return libs, nil
}

// writeImageTar writes a layer holding dirs and files (each the content
// of its host file, symlinks followed), executable.
func writeImageTar(path string, files map[string]string, dirs []string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode}); err != nil {
			return err
		}
	}
	written := map[string]bool{}
	for _, d := range dirs {
		written[strings.TrimSuffix(d, "/")] = true
	}
	for _, in := range slices.Sorted(maps.Keys(files)) {
		host := files[in]
		if err := addParents(tw, in, written); err != nil {
			return err
		}
		src, err := os.Open(host)
		if err != nil {
			return err
		}
		fi, err := src.Stat()
		if err != nil {
			src.Close()
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: in, Mode: 0o755, Size: fi.Size()}); err != nil {
			src.Close()
			return err
		}
		_, err = io.Copy(tw, src)
		src.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// addParents writes the directories above in that the layer lacks yet.
func addParents(tw *tar.Writer, in string, written map[string]bool) error {
	var missing []string
	for p := filepath.Dir(in); p != "." && p != "/"; p = filepath.Dir(p) {
		if written[p] {
			break
		}
		missing = append(missing, p)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		written[missing[i]] = true
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: missing[i] + "/", Mode: 0o755}); err != nil {
			return err
		}
	}
	return nil
}
