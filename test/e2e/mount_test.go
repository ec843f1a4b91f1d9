package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/fail"
)

// recorder is a proxy in front of the registry that records every request
// (method, path and query) and forwards it.
type recorder struct {
	*testenv.Proxy
	mu   sync.Mutex
	reqs []*url.URL
	meth []string
}

func startRecorder(t *testing.T) *recorder {
	t.Helper()
	rec := &recorder{}
	p, err := stack.Registry.StartProxy(t.TempDir(), func(r *http.Request) (int, string, bool) {
		rec.mu.Lock()
		u := *r.URL
		rec.reqs = append(rec.reqs, &u)
		rec.meth = append(rec.meth, r.Method)
		rec.mu.Unlock()
		return 0, "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	rec.Proxy = p
	return rec
}

// find returns the requests with this method and path prefix whose query
// has every key=value of q.
func (rec *recorder) find(method, pathPrefix string, q map[string]string) []*url.URL {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []*url.URL
	for i, u := range rec.reqs {
		if rec.meth[i] != method || !strings.HasPrefix(u.Path, pathPrefix) {
			continue
		}
		ok := true
		for k, v := range q {
			if u.Query().Get(k) != v {
				ok = false
			}
		}
		if ok {
			out = append(out, u)
		}
	}
	return out
}

// writeLayout writes img or idx (a v1.Image or v1.ImageIndex) as a fresh OCI
// layout and returns it with the digest.
func writeLayout(t *testing.T, obj any) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "oci")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	var d v1.Hash
	switch x := obj.(type) {
	case v1.Image:
		err = lp.AppendImage(x)
		if err == nil {
			d, err = x.Digest()
		}
	case v1.ImageIndex:
		err = lp.AppendIndex(x)
		if err == nil {
			d, err = x.Digest()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir, d.String()
}

// pushJSON pushes and returns the result's blob counts.
func pushJSON(t *testing.T, args ...string) pushBlobs {
	t.Helper()
	r := idopipe(t, nil, append([]string{"push", "-o", "json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("push:\n%s", r)
	}
	var out struct {
		Result struct {
			Ref   string
			Blobs pushBlobs
		}
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &out); err != nil || out.Result.Ref == "" {
		t.Fatalf("push result: %v\n%s", err, r)
	}
	return out.Result.Blobs
}

type pushBlobs struct {
	Uploaded, Mounted, Present  int
	UploadedBytes, MountedBytes int64
}

func layerDigests(t *testing.T, img v1.Image) ([]string, int64) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var size int64
	for _, l := range m.Layers {
		out = append(out, l.Digest.String())
		size += l.Size
	}
	return out, size
}

// TestPushMountsFromAnotherRepository pushes a base image to one
// repository, then an image made of its layers plus one of its own to
// another with --mount-from the first: the registry mounts the shared
// layers (POST …?mount=…&from=…), nothing of them is uploaded, and the
// pushed image verifies blob by blob.
func TestPushMountsFromAnotherRepository(t *testing.T) {
	base, err := random.Image(512<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	extra, err := random.Layer(256<<10, "application/vnd.docker.image.rootfs.diff.tar.gzip")
	if err != nil {
		t.Fatal(err)
	}
	app, err := mutate.AppendLayers(base, extra)
	if err != nil {
		t.Fatal(err)
	}
	baseDir, baseDigest := writeLayout(t, base)
	appDir, appDigest := writeLayout(t, app)
	target := []string{"--registry", stack.Registry.Host, "--registry-ca", stack.Registry.CAFile, "--owner", "mount", "--version", "1"}
	if b := pushJSON(t, append([]string{"--oci-layout", baseDir, "--digest", baseDigest, "--image-name", "base"}, target...)...); b.Uploaded != 4 {
		t.Errorf("base push: %+v, want 4 blobs uploaded (3 layers, config)", b)
	}

	rec := startRecorder(t)
	b := pushJSON(t, "--oci-layout", appDir, "--digest", appDigest, "--image-name", "app", "--mount-from", "mount/base",
		"--registry", rec.Host, "--registry-ca", rec.CAFile, "--owner", "mount", "--version", "1")
	shared, sharedBytes := layerDigests(t, base)
	if b.Mounted != len(shared) || b.Uploaded != 2 || b.Present != 0 {
		t.Errorf("app push: %+v, want %d mounted, 2 uploaded (its own layer and config)", b, len(shared))
	}
	for _, d := range shared {
		if n := len(rec.find(http.MethodPost, "/v2/mount/app/blobs/uploads/", map[string]string{"mount": d, "from": "mount/base"})); n != 1 {
			t.Errorf("layer %s: %d mount requests, want 1", d, n)
		}
		if n := len(rec.find(http.MethodPut, "/v2/mount/app/blobs/uploads/", map[string]string{"digest": d})); n != 0 {
			t.Errorf("layer %s was uploaded although the registry could mount it", d)
		}
	}
	if n := len(rec.find(http.MethodPatch, "/v2/mount/app/blobs/uploads/", nil)); n != 2 {
		t.Errorf("%d PATCH uploads, want 2: only the image's own layer and its config", n)
	}
	t.Logf("mounted %d layers (%d bytes not uploaded); %d requests in all", len(shared), sharedBytes, rec.Requests())
	if b.MountedBytes != sharedBytes {
		t.Errorf("mounted bytes %d, want %d", b.MountedBytes, sharedBytes)
	}
	v := idopipe(t, nil, "verify-pull", "--full", "--registry-ca", stack.Registry.CAFile, "--digest", appDigest, stack.Registry.Host+"/mount/app:1")
	if v.code != 0 {
		t.Fatalf("verify the mounted image:\n%s", v)
	}
}

// TestPushMountCandidateLacksBlobs: a candidate repository that does not
// exist, and one that lacks the blobs, cost nothing but the normal upload.
func TestPushMountCandidateLacksBlobs(t *testing.T) {
	img, err := random.Image(128<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	dir, digest := writeLayout(t, img)
	// mount/holder holds an image of other blobs.
	other, err := random.Image(64<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	odir, odigest := writeLayout(t, other)
	pushJSON(t, "--oci-layout", odir, "--digest", odigest, "--image-name", "holder", "--version", "1",
		"--registry", stack.Registry.Host, "--registry-ca", stack.Registry.CAFile, "--owner", "mount")

	rec := startRecorder(t)
	b := pushJSON(t, "--oci-layout", dir, "--digest", digest, "--image-name", "lonely", "--version", "1",
		"--mount-from", "mount/no-such-repo", "--mount-from", rec.Host+"/mount/holder",
		"--registry", rec.Host, "--registry-ca", rec.CAFile, "--owner", "mount")
	if b.Uploaded != 3 || b.Mounted != 0 {
		t.Errorf("push: %+v, want 3 blobs uploaded, none mounted", b)
	}
	if n := len(rec.find(http.MethodPost, "/v2/mount/lonely/blobs/uploads/", map[string]string{"from": "mount/holder"})); n != 0 {
		t.Errorf("%d mount requests for blobs no candidate holds", n)
	}
	if n := len(rec.find(http.MethodHead, "/v2/mount/holder/blobs/", nil)); n != 3 {
		t.Errorf("%d HEAD requests to the candidate, want one per blob (3)", n)
	}
	v := idopipe(t, nil, "verify-pull", "--full", "--registry-ca", stack.Registry.CAFile, "--digest", digest, stack.Registry.Host+"/mount/lonely:1")
	if v.code != 0 {
		t.Fatalf("verify:\n%s", v)
	}

	// A repository of another registry, or no repository at all, is bad input.
	for _, bad := range []struct{ value, want string }{
		{"ghcr.io/mount/holder", "is on registry ghcr.io, not " + stack.Registry.Host},
		{"mount/holder:1", "is not a repository"},
	} {
		r := idopipe(t, nil, "push", "--oci-layout", dir, "--digest", digest, "--image-name", "lonely", "--version", "1", "--mount-from", bad.value,
			"--registry", stack.Registry.Host, "--registry-ca", stack.Registry.CAFile, "--owner", "mount")
		last := lastLine(r.stderr)
		if r.code != int(fail.Usage) || !strings.Contains(last, bad.want) || !strings.Contains(last, "--mount-from") {
			t.Errorf("--mount-from %s:\n%s", bad.value, r)
		}
	}
}

// TestPushIndexMountsEveryPlatform pushes an image index of three
// platform images to one repository, then the same index to another with
// --mount-from the first: every layer and config of every platform image
// is mounted, none uploaded.
func TestPushIndexMountsEveryPlatform(t *testing.T) {
	idx, err := random.Index(128<<10, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	dir, digest := writeLayout(t, idx)
	args := []string{"--oci-layout", dir, "--digest", digest, "--version", "1", "--owner", "mount"}
	first := pushJSON(t, append(args, "--image-name", "index-a", "--registry", stack.Registry.Host, "--registry-ca", stack.Registry.CAFile)...)
	if first.Uploaded != 9 {
		t.Errorf("first push: %+v, want 9 blobs uploaded (3 images of 2 layers and a config)", first)
	}
	rec := startRecorder(t)
	b := pushJSON(t, append(args, "--image-name", "index-b", "--mount-from", "mount/index-a", "--registry", rec.Host, "--registry-ca", rec.CAFile)...)
	if b.Mounted != 9 || b.Uploaded != 0 {
		t.Errorf("index push with --mount-from: %+v, want all 9 blobs mounted", b)
	}
	if n := len(rec.find(http.MethodPatch, "/v2/mount/index-b/blobs/uploads/", nil)); n != 0 {
		t.Errorf("%d blob uploads; every blob could be mounted", n)
	}
	v := idopipe(t, nil, "verify-pull", "--full", "--registry-ca", stack.Registry.CAFile, "--digest", digest, stack.Registry.Host+"/mount/index-b:1")
	if v.code != 0 {
		t.Fatalf("verify the mounted index:\n%s", v)
	}
}

// TestReleaseMountsEarlierImages: in a release of two images sharing their
// layers, the second mounts them from the first's repository.
func TestReleaseMountsEarlierImages(t *testing.T) {
	df, err := os.ReadFile(filepath.Join(source, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	actuator := filepath.Join(t.TempDir(), "Dockerfile.actuator")
	if err := os.WriteFile(actuator, append(df, []byte("LABEL org.example.plugin=actuator\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(t.TempDir(), "manifest.yaml")
	pods := "apiVersion: v1\nkind: Pod\nmetadata: {name: planner}\nspec: {containers: [{name: c, image: planner:0.4.0}]}\n---\n" +
		"apiVersion: v1\nkind: Pod\nmetadata: {name: actuator}\nspec: {containers: [{name: c, image: actuator:0.4.0}]}\n"
	if err := os.WriteFile(manifest, []byte(pods), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := startRecorder(t)
	r := idopipe(t, nil, releaseWith("mount-release", manifest, "--to", "push", "--registry", rec.Host, "--registry-ca", rec.CAFile,
		"--owner", "mount-release", "--extra-image", "name=actuator,source="+source+",file="+actuator, "-o", "json")...)
	if r.code != 0 {
		t.Fatalf("release:\n%s", r)
	}
	var planner struct{ Uploaded, Mounted int }
	var extra []struct {
		Blobs struct{ Uploaded, Mounted int }
	}
	if err := jsonField(r, "blobs", &planner); err != nil || planner.Uploaded == 0 || planner.Mounted != 0 {
		t.Errorf("the planner's blobs in the JSON result: %+v (%v)", planner, err)
	}
	if err := jsonField(r, "extraImages", &extra); err != nil || len(extra) != 1 || extra[0].Blobs.Mounted == 0 {
		t.Errorf("the actuator's blobs in the JSON result: %+v (%v)", extra, err)
	}
	mounts := rec.find(http.MethodPost, "/v2/mount-release/actuator/blobs/uploads/", map[string]string{"from": "mount-release/planner"})
	if len(mounts) == 0 {
		t.Fatalf("the actuator mounted nothing from the planner's repository:\n%s", r)
	}
	if !strings.Contains(r.stdout, "mounted") {
		t.Errorf("the push stage does not say what was mounted:\n%s", r.stdout)
	}
	t.Logf("the actuator mounted %d blobs from the planner's repository", len(mounts))
}
