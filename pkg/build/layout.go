package build

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	contentlocal "github.com/containerd/containerd/v2/plugins/content/local"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/gofrs/flock"
	"github.com/moby/buildkit/client/ociindex"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/idopipe/idopipe/pkg/fail"
)

type descriptor = ocispecs.Descriptor

// layoutStore is the OCI layout images are exported to. Builds into the
// same directory share one store, so that concurrent exports of a shared
// layer wait for each other instead of failing on the store's lock, and
// index.json is updated by one build at a time.
type layoutStore struct {
	content.Store
	dir     string
	created bool       // the directory did not exist before this build
	mu      sync.Mutex // index.json
	lock    *flock.Flock
}

// lockName is the file in a layout that a build holds locked while it
// builds into it: two idopipe processes building into one layout (the
// default one of an image name) wait for each other rather than write the
// same blob at once.
const lockName = ".idopipe-build.lock"

// layoutStores hands out one store per layout directory.
type layoutStores struct {
	mu sync.Mutex
	m  map[string]*layoutStore
}

func (ls *layoutStores) get(ctx context.Context, dir string) (*layoutStore, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fail.Wrap(fail.Usage, err, "", "bad OCI layout directory %s", dir)
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if s, ok := ls.m[abs]; ok {
		return s, nil
	}
	_, statErr := os.Stat(abs)
	created := errors.Is(statErr, os.ErrNotExist)
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fail.Wrap(fail.Build, err, "pass --oci-layout a writable directory", "cannot create OCI layout %s", dir)
	}
	cs, err := contentlocal.NewStore(abs)
	if err != nil {
		return nil, fail.Wrap(fail.Build, err, "pass --oci-layout a writable directory", "cannot open OCI layout %s", dir)
	}
	lk := flock.New(filepath.Join(abs, lockName))
	if ok, err := lk.TryLockContext(ctx, 50*time.Millisecond); !ok {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fail.Wrap(fail.Build, err, "pass --oci-layout a writable directory", "cannot lock OCI layout %s", dir)
	}
	s := &layoutStore{Store: cs, dir: abs, created: created, lock: lk}
	if ls.m == nil {
		ls.m = map[string]*layoutStore{}
	}
	ls.m[abs] = s
	return s, nil
}

// discard removes the layout directories this build created, after a
// failure: no empty or half-written layout is left where the image would
// have been. A layout that existed is left as it was; its index.json is
// written only when a build succeeds.
func (ls *layoutStores) discard() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, s := range ls.m {
		if s.created {
			_ = os.RemoveAll(s.dir)
		}
	}
}

// unlock lets other builds into the layouts.
func (ls *layoutStores) unlock() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, s := range ls.m {
		_ = s.lock.Unlock()
	}
}

// Writer waits while another export writes the same blob.
func (s *layoutStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	delay := 5 * time.Millisecond
	for {
		w, err := s.Store.Writer(ctx, opts...)
		if err == nil || !errors.Is(err, cerrdefs.ErrUnavailable) {
			return w, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// put records the exported image in index.json under names.
func (s *layoutStore) put(desc descriptor, names []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := make([]ociindex.NameOrTag, len(names))
	for i, n := range names {
		ns[i] = ociindex.Name(n)
	}
	if err := ociindex.NewStoreIndex(s.dir).Put(desc, ns...); err != nil {
		return fail.Wrap(fail.Build, err, "make sure no other build writes to the same --oci-layout", "cannot record the image in %s/index.json", s.dir)
	}
	return nil
}

// DefaultLayout is where an image is exported when no layout is given:
// CACHE/idopipe/oci/NAME, where cacheDir is the user's cache directory
// ($XDG_CACHE_HOME, else ~/.cache), one layout per image name, outside any
// build context, kept from build to build so that an unchanged rebuild
// finds its export there.
func DefaultLayout(cacheDir, name string) (string, error) {
	base := cacheDir
	if base == "" {
		return "", fail.New(fail.Usage, "pass --oci-layout DIR, or set $HOME or $XDG_CACHE_HOME", "no cache directory for the default OCI layout")
	}
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return "", fail.New(fail.Usage, "pass --image-name NAME (no slashes), or --oci-layout DIR", "image name %q cannot name a layout directory", name)
	}
	return filepath.Join(base, "idopipe", "oci", name), nil
}
