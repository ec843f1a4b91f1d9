package build_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
)

// watcher is a progress writer that cancels once pattern matches what it
// has seen.
type watcher struct {
	mu      sync.Mutex
	b       strings.Builder
	pattern *regexp.Regexp
	cancel  func()
}

func (w *watcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if w.cancel != nil && w.pattern.MatchString(w.b.String()) {
		w.cancel()
		w.cancel = nil
	}
	return len(p), nil
}

func (w *watcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestInterruptDuringLayoutCopy cancels a build while BuildKit copies a
// large base layer from an OCI layout (a named context), then builds again:
// the second build must succeed.
func TestInterruptDuringLayoutCopy(t *testing.T) {
	testenv.NeedStack(t)
	t.Parallel()
	big := bigLayer(t, 256<<20)
	bl, err := layout.FromPath(busybox)
	if err != nil {
		t.Fatal(err)
	}
	h, err := v1.NewHash(busyboxDigest)
	if err != nil {
		t.Fatal(err)
	}
	base, err := bl.Image(h)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, big)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "big")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	ld, _ := big.Digest()
	src := writeFiles(t, map[string]string{"Dockerfile": "FROM big\nRUN true\n"})
	s := spec(t, src)
	s.Contexts = map[string]string{"big": "oci-layout://" + dir}

	ctx, cancel := context.WithCancel(context.Background())
	// Cancel once BuildKit reports some, not all, bytes of the big layer
	// copied ("sha256:… 25.17MB / 268.46MB").
	w := &watcher{pattern: regexp.MustCompile(regexp.QuoteMeta(ld.String()) + ` [0-9.]*[1-9][0-9.]*[kMG]?B / `), cancel: cancel}
	_, err = build.Build(ctx, s, build.WithAddress(stack.BuildKit.Address), build.WithProgress(w, "plain"))
	t.Logf("interrupted build: %v\n%s", err, w.String())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("the interrupted build: %v, want context.Canceled\n%s", err, w.String())
	}
	if !strings.Contains(w.String(), ld.String()+" ") || strings.Contains(w.String(), "extracting "+ld.String()) {
		t.Fatalf("the build was not interrupted during the copy of the big layer:\n%s", w.String())
	}
	// The rebuild finds BuildKit's partial copy, clears it and succeeds.
	res, out := mustBuild(t, s)
	if !strings.Contains(out, "cleared a partial layer copy") {
		t.Errorf("the rebuild did not meet the partial copy (did BuildKit fix the resume?):\n%s", out)
	}
	layers, err := readImage(t, res.Layout, res.Digest).Layers()
	if err != nil {
		t.Fatal(err)
	}
	has := false
	for _, l := range layers {
		if d, _ := l.Digest(); d == ld {
			has = true
		}
	}
	if !has {
		t.Errorf("the rebuilt image lacks the big base layer %s", ld)
	}
}

// bigLayer is an uncompressed layer holding one file of n random bytes.
func bigLayer(t *testing.T, n int64) v1.Layer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: "big", Size: n, Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(tw, rand.NewChaCha8([32]byte{1}), n); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return static.NewLayer(b.Bytes(), types.OCIUncompressedLayer)
}
