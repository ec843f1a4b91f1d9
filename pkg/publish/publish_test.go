package publish

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

type fakeBar struct {
	sets    [][2]int64
	cleared bool
}

func (b *fakeBar) Set(c, t int64) { b.sets = append(b.sets, [2]int64{c, t}) }
func (b *fakeBar) Clear()         { b.cleared = true }

func feed(updates ...v1.Update) <-chan v1.Update {
	ch := make(chan v1.Update, len(updates))
	for _, u := range updates {
		ch <- u
	}
	close(ch)
	return ch
}

func TestProgressDisplays(t *testing.T) {
	tag := name.MustParseReference("ghcr.io/o/planner:1").(name.Tag)
	ups := []v1.Update{{Complete: 10, Total: 100}, {Complete: 100, Total: 300}, {Complete: 300, Total: 300}}

	var lines bytes.Buffer
	done := make(chan struct{})
	progressLines(&lines, tag, 0, feed(ups...), done)
	<-done
	out := lines.String()
	if !strings.HasPrefix(out, "pushing ghcr.io/o/planner:1: 10 B of 100 B") || !strings.Contains(out, "\npushed ghcr.io/o/planner:1: 300 B in ") || strings.Contains(out, "\r") {
		t.Errorf("lines:\n%q", out)
	}

	var w bytes.Buffer
	bar := &fakeBar{}
	var label string
	done = make(chan struct{})
	progressBar(func(_ io.Writer, l string) Bar { label = l; return bar })(&w, tag, 200, feed(ups...), done)
	<-done
	if label != "pushing ghcr.io/o/planner:1" || len(bar.sets) != 3 || bar.sets[0] != [2]int64{10, 200} || bar.sets[1] != [2]int64{100, 300} || !bar.cleared {
		t.Errorf("bar %q: %+v", label, bar)
	}
	if got := w.String(); !strings.HasPrefix(got, "pushed ghcr.io/o/planner:1: 300 B in ") || strings.Count(got, "\n") != 1 {
		t.Errorf("after the bar, want only the last line: %q", got)
	}
}

func TestCandidates(t *testing.T) {
	target, _ := name.NewRepository("ghcr.io/o/app")
	var in []name.Repository
	for _, r := range []string{"ghcr.io/o/base", "ghcr.io/o/app", "quay.io/o/base", "ghcr.io/o/base", "ghcr.io/o/other"} {
		repo, err := name.NewRepository(r)
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, repo)
	}
	var got []string
	for _, c := range candidates(target, in) {
		got = append(got, c.String())
	}
	if strings.Join(got, " ") != "ghcr.io/o/base ghcr.io/o/other" {
		t.Errorf("candidates %v: want the same registry's, not the target, each once", got)
	}
}

// TestMountableIndex: every platform image of a wrapped index hands
// go-containerregistry MountableLayers for the blobs found elsewhere
// (layers and config), and leaves the others as they were.
func TestMountableIndex(t *testing.T) {
	idx, err := random.Index(64, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	sizes, _, err := blobSizes(idx)
	if err != nil || len(sizes) != 6 {
		t.Fatalf("blobs of 2 images of 2 layers and a config: %d (%v)", len(sizes), err)
	}
	from := name.MustParseReference("ghcr.io/o/base:x").Context()
	m, _ := idx.IndexManifest()
	first, _ := idx.Image(m.Manifests[0].Digest)
	cfg, _ := first.ConfigName()
	ls, _ := first.Layers()
	l0, _ := ls[0].Digest()
	wrapped := mountable(idx, map[v1.Hash]name.Repository{cfg: from, l0: from}).(v1.ImageIndex)

	mounts := 0
	for i, d := range m.Manifests {
		img, err := wrapped.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		layers, _ := img.Layers()
		cl, err := img.(interface{ ConfigLayer() (v1.Layer, error) }).ConfigLayer()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range append(layers, cl) {
			if ml, ok := l.(*remote.MountableLayer); ok {
				mounts++
				if i != 0 || ml.Reference.Context() != from {
					t.Errorf("image %d: layer mountable from %v", i, ml.Reference)
				}
			}
		}
	}
	if mounts != 2 {
		t.Errorf("%d mountable blobs, want 2 (a layer and the config of the first image)", mounts)
	}
	children, err := wrapped.(interface {
		Manifests() ([]partial.Describable, error)
	}).Manifests()
	if err != nil || len(children) != 2 {
		t.Fatalf("Manifests: %d, %v", len(children), err)
	}
	if _, ok := children[0].(*mountImage); !ok {
		t.Errorf("Manifests hands go-containerregistry a %T, not the wrapped image", children[0])
	}
}
