package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

//go:embed testdata/planner/Dockerfile
var plannerDockerfile []byte

//go:embed testdata/planner/main.go
var plannerMain []byte

// PlannerFixture writes a build context shaped like the IDO planner's into
// dir: its Dockerfile and a static Go binary compiled from a small planner
// stand-in. The Dockerfile's build stage is FROM golang:1.24.6, as upstream's:
// pass BusyboxLayout as the named build context "golang:1.24.6". Its final
// stage is FROM scratch without /etc/passwd and runs as USER nonroot:nonroot.
func PlannerFixture(ctx context.Context, dir string) error {
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), plannerDockerfile, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), plannerMain, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module planner\n\ngo 1.22\n"), 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, "planner"), ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("compile planner fixture: %v\n%s", err, out)
	}
	return os.RemoveAll(src)
}

// BusyboxLayout writes a one-layer linux/amd64 image holding Debian's static
// busybox as /bin/busybox with /bin/sh and friends linked to it, as an OCI
// layout in dir, and returns its digest. It stands in for a base image from
// Docker Hub, which cannot be reached here.
func BusyboxLayout(dir string) (string, error) {
	bin, err := exec.LookPath("busybox")
	if err != nil {
		return "", fmt.Errorf("busybox not found: install Debian's busybox-static (make deps): %w", err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "tmp/", "etc/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
			return "", err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(data))}); err != nil {
		return "", err
	}
	if _, err := tw.Write(data); err != nil {
		return "", err
	}
	for _, applet := range []string{"sh", "chmod", "cp", "ls", "mkdir", "cat", "echo", "true"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777}); err != nil {
			return "", err
		}
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/sh\n"
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/passwd", Mode: 0o644, Size: int64(len(passwd))}); err != nil {
		return "", err
	}
	if _, err := io.WriteString(tw, passwd); err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		return "", err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", err
	}
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: "amd64", OS: "linux",
		Config: v1.Config{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh"}},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: mustDiffIDs(layer)},
	})
	if err != nil {
		return "", err
	}
	return writeLayout(dir, img)
}

func mustDiffIDs(l v1.Layer) []v1.Hash {
	d, err := l.DiffID()
	if err != nil {
		return nil
	}
	return []v1.Hash{d}
}

// RandomLayout writes a random image (go-containerregistry's random.Image:
// layers of size bytes each) as an OCI layout at dir and returns the
// image's digest.
func RandomLayout(dir string, size, layers int64) (string, error) {
	img, err := random.Image(size, layers)
	if err != nil {
		return "", err
	}
	return writeLayout(dir, img)
}

// writeLayout writes img as an OCI layout at dir and returns its digest.
func writeLayout(dir string, img v1.Image) (string, error) {
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return "", err
	}
	if err := lp.AppendImage(img); err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

// PlatformImage is a random image of layers layers of size bytes each
// whose config says os/arch: for tests of platform checks.
func PlatformImage(os, arch string, size int64, layers int) (v1.Image, error) {
	img, err := random.Image(size, int64(layers))
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = os, arch
	return mutate.ConfigFile(img, cf)
}
