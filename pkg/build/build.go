package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	contentlocal "github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	bkclient "github.com/moby/buildkit/client"
	_ "github.com/moby/buildkit/client/connhelper/dockercontainer" // docker-container:// addresses
	_ "github.com/moby/buildkit/client/connhelper/kubepod"         // kube-pod:// addresses
	"github.com/moby/buildkit/util/progress/progressui"
	"github.com/tonistiigi/fsutil"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/idopipe/idopipe/pkg/fail"
)

// DefaultAddress is buildkitd's own default socket.
const DefaultAddress = "unix:///run/buildkit/buildkitd.sock"

// Spec is what to build.
type Spec struct {
	Context    string            // build context directory
	Dockerfile string            // path to the Dockerfile; relative paths are taken from the working directory
	Name       string            // image name, e.g. "planner"
	Version    string            // image tag, e.g. "0.4.0"
	NoCache    bool              // ignore BuildKit's cache
	Pull       bool              // always resolve base images anew
	BuildArgs  map[string]string // --build-arg
	Target     string            // --target stage
	// Contexts are named build contexts: NAME=oci-layout:///dir[:tag|@digest]
	// replaces `FROM NAME` with an image from a local OCI layout; any other
	// value (docker-image://…, a directory) is handed to the frontend as is.
	Contexts map[string]string
	// Layout is the OCI image layout directory the image is exported to.
	Layout string
}

// Result is a built image.
type Result struct {
	Layout string // OCI image layout directory
	Digest string // sha256:… of the image manifest (or index)
	Ref    string // name:version, as recorded in the layout
}

// Option configures Build.
type Option func(*options)

type options struct {
	address  string
	progress io.Writer
	mode     progressui.DisplayMode
}

// WithAddress sets the buildkitd address (unix://, tcp://, docker-container://, kube-pod://).
func WithAddress(addr string) Option { return func(o *options) { o.address = addr } }

// WithProgress shows BuildKit's progress display on w in mode ("auto", "tty", "plain", "rawjson", "quiet").
func WithProgress(w io.Writer, mode string) Option {
	return func(o *options) { o.progress, o.mode = w, progressui.DisplayMode(mode) }
}

// Validate checks the inputs that exist before any daemon is contacted.
func (s Spec) Validate() error {
	fi, err := os.Stat(s.Context)
	if err != nil || !fi.IsDir() {
		return fail.New(fail.Build, "pass --source DIR, the directory the Dockerfile builds from", "build context %s is not a directory", s.Context)
	}
	if fi, err := os.Stat(s.Dockerfile); err != nil || fi.IsDir() {
		return fail.New(fail.Build, "pass --file PATH to the Dockerfile", "Dockerfile %s does not exist", s.Dockerfile)
	}
	if s.Name == "" || s.Version == "" {
		return fail.New(fail.Usage, "pass --image-name and --version", "image name and version must not be empty")
	}
	if s.Layout == "" {
		return fail.New(fail.Usage, "pass --oci-layout DIR", "no OCI layout directory to export to")
	}
	return nil
}

// Build builds s and exports it into s.Layout.
func Build(ctx context.Context, s Spec, opts ...Option) (Result, error) {
	o := options{address: DefaultAddress, progress: io.Discard, mode: progressui.PlainMode}
	for _, opt := range opts {
		opt(&o)
	}
	if err := s.Validate(); err != nil {
		return Result{}, err
	}
	c, err := Connect(ctx, o.address)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()

	solve, err := s.solveOpt()
	if err != nil {
		return Result{}, err
	}
	ch := make(chan *bkclient.SolveStatus)
	display, err := progressui.NewDisplay(o.progress, o.mode)
	if err != nil {
		return Result{}, fail.Wrap(fail.Usage, err, "use --progress auto, tty, plain, rawjson or quiet", "bad progress mode")
	}
	var resp *bkclient.SolveResponse
	eg, ectx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		var err error
		resp, err = c.Solve(ectx, nil, solve, ch)
		return err
	})
	eg.Go(func() error {
		_, err := display.UpdateFrom(context.WithoutCancel(ectx), ch)
		return err
	})
	if err := eg.Wait(); err != nil {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		return Result{}, fail.Wrap(fail.Build, unwrapGRPC(err), "see BuildKit's output above", "build of %s:%s failed", s.Name, s.Version)
	}
	dgst := resp.ExporterResponse["containerimage.digest"]
	if dgst == "" {
		return Result{}, fail.New(fail.Build, "", "BuildKit reported no image digest for %s:%s", s.Name, s.Version)
	}
	return Result{Layout: s.Layout, Digest: dgst, Ref: s.Name + ":" + s.Version}, nil
}

// Connect opens a client to addr and checks that a daemon answers.
func Connect(ctx context.Context, addr string) (*bkclient.Client, error) {
	unreachable := func(err error) error {
		return fail.Wrap(fail.Build, unwrapGRPC(err),
			"start buildkitd, or point --buildkit-host / $BUILDKIT_HOST at a running one",
			"cannot reach BuildKit at %s", addr)
	}
	c, err := bkclient.New(ctx, addr)
	if err != nil {
		return nil, unreachable(err)
	}
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Info(ictx); err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, unreachable(err)
	}
	return c, nil
}

func (s Spec) solveOpt() (bkclient.SolveOpt, error) {
	ctxFS, err := fsutil.NewFS(s.Context)
	if err != nil {
		return bkclient.SolveOpt{}, fail.Wrap(fail.Build, err, "", "cannot read build context %s", s.Context)
	}
	dfDir, dfName := filepath.Split(s.Dockerfile)
	if dfDir == "" {
		dfDir = "."
	}
	dfFS, err := fsutil.NewFS(dfDir)
	if err != nil {
		return bkclient.SolveOpt{}, fail.Wrap(fail.Build, err, "", "cannot read Dockerfile directory %s", dfDir)
	}
	attrs := map[string]string{"filename": dfName}
	if s.NoCache {
		attrs["no-cache"] = ""
	}
	if s.Pull {
		attrs["image-resolve-mode"] = "pull"
	}
	if s.Target != "" {
		attrs["target"] = s.Target
	}
	for k, v := range s.BuildArgs {
		attrs["build-arg:"+k] = v
	}
	stores := map[string]content.Store{}
	for name, src := range s.Contexts {
		v, store, err := namedContext(name, src)
		if err != nil {
			return bkclient.SolveOpt{}, err
		}
		attrs["context:"+name] = v
		if store != nil {
			stores[name] = store
		}
	}
	opt := bkclient.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: attrs,
		LocalMounts:   map[string]fsutil.FS{"context": ctxFS, "dockerfile": dfFS},
		Exports: []bkclient.ExportEntry{{
			Type:      bkclient.ExporterOCI,
			Attrs:     map[string]string{"name": s.Name + ":" + s.Version, "tar": "false"},
			OutputDir: s.Layout,
		}},
	}
	if len(stores) > 0 {
		opt.OCIStores = stores
	}
	return opt, nil
}

// namedContext turns NAME=oci-layout:///dir into the frontend's form
// (oci-layout://<store>@sha256:…) and a content store serving that layout.
func namedContext(name, src string) (string, content.Store, error) {
	const scheme = "oci-layout://"
	if !strings.HasPrefix(src, scheme) {
		return src, nil, nil
	}
	dir := strings.TrimPrefix(src, scheme)
	var want string
	if i := strings.LastIndex(dir, "@"); i >= 0 {
		dir, want = dir[:i], dir[i+1:]
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		return "", nil, fail.Wrap(fail.Build, err, "point the build context at an OCI image layout directory", "build context %s=%s is not an OCI layout", name, src)
	}
	if want == "" {
		idx, err := lp.ImageIndex()
		if err != nil {
			return "", nil, fail.Wrap(fail.Build, err, "", "cannot read OCI layout %s", dir)
		}
		m, err := idx.IndexManifest()
		if err != nil || len(m.Manifests) != 1 {
			return "", nil, fail.New(fail.Build, "name the image as oci-layout://DIR@sha256:…", "OCI layout %s does not hold exactly one image", dir)
		}
		want = m.Manifests[0].Digest.String()
	}
	store, err := contentlocal.NewStore(dir)
	if err != nil {
		return "", nil, fail.Wrap(fail.Build, err, "", "cannot open OCI layout %s", dir)
	}
	return scheme + name + "@" + want, store, nil
}

// unwrapGRPC strips gRPC's "rpc error: code = … desc =" wrapping.
func unwrapGRPC(err error) error {
	if s, ok := status.FromError(err); ok && s.Code() != codes.OK {
		return errors.New(s.Message())
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return fmt.Errorf("%s", se.GRPCStatus().Message())
	}
	return err
}
