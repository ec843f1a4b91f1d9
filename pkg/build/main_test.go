package build_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"github.com/containerd/log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
)

// The tests build against a real buildkitd (and, for the registry cache,
// the stack's TLS+htpasswd registry), started once for the package.
var (
	stack         *testenv.Stack
	busybox       string // OCI layout of a busybox base image
	busyboxDigest string // its image's digest
)

func TestMain(m *testing.M) {
	_ = log.SetLevel("error") // containerd's content store warns about fsverity on every layout
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // the fast tier: no stack, its tests skip
	}
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pkg/build setup:", err)
		code = 1
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "idopipe-build-test-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(dir)
	busybox = filepath.Join(dir, "busybox")
	if busyboxDigest, err = testenv.BusyboxLayout(busybox); err != nil {
		return 1, err
	}
	start := time.Now()
	stack, err = testenv.Start(ctx, "", testenv.Parts{BuildKit: true, Registry: true})
	if err != nil {
		return 1, err
	}
	defer stack.Stop()
	fmt.Fprintf(os.Stderr, "pkg/build: buildkitd and registry up in %.1fs\n", time.Since(start).Seconds())
	return m.Run(), nil
}

// writeFiles writes name→content under a new temporary directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// spec builds dir/Dockerfile into a fresh layout.
func spec(t *testing.T, dir string) build.Spec {
	t.Helper()
	return build.Spec{
		Context: dir, Dockerfile: filepath.Join(dir, "Dockerfile"),
		Name: "test", Version: "1.0.0",
		Layout:   filepath.Join(t.TempDir(), "oci"),
		Contexts: map[string]string{"busybox": "oci-layout://" + busybox, "golang:1.24.6": "oci-layout://" + busybox},
	}
}

// progress is a BuildKit plain progress log, for assertions and failures.
type progress struct{ bytes.Buffer }

func (p *progress) opts() []build.Option {
	return []build.Option{build.WithAddress(stack.BuildKit.Address), build.WithProgress(&p.Buffer, "plain")}
}

func mustBuild(t *testing.T, s build.Spec, opts ...build.Option) (build.Result, string) {
	t.Helper()
	var p progress
	res, err := build.Build(context.Background(), s, append(p.opts(), opts...)...)
	if err != nil {
		t.Fatalf("build: %v\nprogress:\n%s", err, p.String())
	}
	return res, p.String()
}

// index reads the image index res.Digest from the result's layout.
func readIndex(t *testing.T, res build.Result) *v1.IndexManifest {
	t.Helper()
	lp, err := layout.FromPath(res.Layout)
	if err != nil {
		t.Fatal(err)
	}
	root, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	h, _ := v1.NewHash(res.Digest)
	idx, err := root.ImageIndex(h)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// readImage returns the image with digest d from layout dir, whether it is
// listed in index.json or in an image index there.
func readImage(t *testing.T, dir, d string) v1.Image {
	t.Helper()
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := v1.NewHash(d)
	root, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	if img, ok := findImage(root, h); ok {
		return img
	}
	t.Fatalf("no image %s in %s", d, dir)
	return nil
}

func findImage(idx v1.ImageIndex, h v1.Hash) (v1.Image, bool) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, false
	}
	for _, d := range m.Manifests {
		switch {
		case d.Digest == h && !d.MediaType.IsIndex():
			img, err := idx.Image(h)
			return img, err == nil
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				continue
			}
			if img, ok := findImage(child, h); ok {
				return img, true
			}
		}
	}
	return nil, false
}

// fileInImage returns the content of path in img's layers ("" if absent).
func fileInImage(t *testing.T, img v1.Image, path string) string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var found string
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := tarFile(t, rc, strings.TrimPrefix(path, "/")); ok {
			found = s
		}
		rc.Close()
	}
	return found
}
