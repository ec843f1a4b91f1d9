package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

//go:embed testdata/standin/main.go
var standinMain []byte

// MongoImage is the stand-in the mirror serves for the manifest's mongo:6:
// a static binary that really listens on 27017.
const MongoImage = "docker.io/library/mongo:6"

// fillMirror pushes the images the node needs from docker.io to the mirror
// registry (anonymous, TLS): mongo:6's stand-in and the sandbox image.
func fillMirror(ctx context.Context, dir string, mirror *Registry) error {
	bin, err := compileStandin(ctx, dir)
	if err != nil {
		return err
	}
	client, err := mirror.HTTPClient()
	if err != nil {
		return err
	}
	for ref, cfg := range map[string]v1.Config{
		"library/mongo:6": {Entrypoint: []string{"/standin", "-listen", ":27017", "-name", "mongod stand-in"}, ExposedPorts: map[string]struct{}{"27017/tcp": {}}},
		"idopipe/pause:1": {Entrypoint: []string{"/standin"}},
	} {
		img, err := standinImage(bin, cfg)
		if err != nil {
			return err
		}
		tag, err := name.NewTag(mirror.Host + "/" + ref)
		if err != nil {
			return err
		}
		if err := remote.Write(tag, img, remote.WithContext(ctx), remote.WithTransport(client.Transport.(*http.Transport))); err != nil {
			return fmt.Errorf("push %s to the mirror: %w", ref, err)
		}
	}
	return nil
}

func compileStandin(ctx context.Context, dir string) ([]byte, error) {
	src := filepath.Join(dir, "standin-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(src)
	if err := os.WriteFile(filepath.Join(src, "main.go"), standinMain, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module standin\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "standin")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-mod=mod", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("compile the stand-in image's binary: %v\n%s", err, b)
	}
	return os.ReadFile(out)
}

// standinImage is a FROM scratch linux/amd64 image holding bin as /standin
// and empty /tmp and /data/db (mongo's mount points).
func standinImage(bin []byte, cfg v1.Config) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"tmp/", "data/", "data/db/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o1777}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "standin", Mode: 0o755, Size: int64(len(bin))}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	return mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: "amd64", OS: "linux", Config: cfg,
		RootFS: v1.RootFS{Type: "layers", DiffIDs: mustDiffIDs(layer)},
	})
}
