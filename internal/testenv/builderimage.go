package testenv

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
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
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/idopipe/idopipe/pkg/buildkitd/kube"
)

// BuilderImage is where the node finds a builder's default image: the
// docker.io name users get, which the node's docker.io mirror serves.
// RootlessBuilderImage is the rootless builder's.
const (
	BuilderImage         = kube.DefaultImage
	RootlessBuilderImage = kube.DefaultRootlessImage
)

// PushBuilderImage makes the image a builder in the stack's cluster runs
// and pushes it to the node's docker.io mirror as moby/buildkit:<pinned
// version>, so `idopipe buildkit create --kubernetes` with its default
// image runs on the node as it would pull from Docker Hub elsewhere. There
// is no Docker Hub here: the image holds the stack's own buildkitd and
// buildctl (the pinned BuildKit, static) and the host's runc with the
// shared libraries it links. It returns the image's digest reference in
// the mirror.
func (s *Stack) PushBuilderImage(ctx context.Context) (string, error) {
	files, err := s.builderFiles(ctx)
	if err != nil {
		return "", err
	}
	for _, d := range []string{"tmp", "etc", "etc/buildkit", "run", "var", "var/lib", "var/lib/buildkit"} {
		files[d] = layerEntry{dir: true}
	}
	return s.pushBuilderImage(ctx, "builder-image", BuilderImage, files, v1.Config{
		Entrypoint: []string{"buildkitd"},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	})
}

// PushRootlessBuilderImage makes the rootless builder's image, as
// moby/buildkit:<pinned version>-rootless is made, and pushes it to the
// node's docker.io mirror under that name: the privileged image's
// binaries, the pinned rootlesskit as the entrypoint (`rootlesskit
// buildkitd ARGS`), the host's newuidmap and newgidmap (Debian's uidmap)
// with their libraries and the one capability each needs, user 1000
// ("user") with 65536 subordinate ids from 100000 in /etc/subuid and
// /etc/subgid, its home and runtime directory, and the environment that
// puts buildkitd's socket (and buildctl's BUILDKIT_HOST) under
// $XDG_RUNTIME_DIR. It returns the image's digest reference in the mirror.
func (s *Stack) PushRootlessBuilderImage(ctx context.Context) (string, error) {
	files, err := s.rootlessBuilderFiles(ctx)
	if err != nil {
		return "", err
	}
	return s.pushBuilderImage(ctx, "rootless-builder-image", RootlessBuilderImage, files, v1.Config{
		Entrypoint: []string{"rootlesskit", "buildkitd"},
		User:       "1000:1000",
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME=/home/user", "USER=user", "XDG_RUNTIME_DIR=/run/user/1000", "TMPDIR=/home/user/.local/tmp",
			"BUILDKIT_HOST=unix:///run/user/1000/buildkit/buildkitd.sock"},
		Volumes: map[string]struct{}{"/home/user/.local/share/buildkit": {}},
	})
}

// rootlessBuilderFiles are the rootless image's files.
func (s *Stack) rootlessBuilderFiles(ctx context.Context) (map[string]layerEntry, error) {
	files, err := s.builderFiles(ctx)
	if err != nil {
		return nil, err
	}
	rk := filepath.Join(s.Tools, "rootlesskit")
	if _, err := os.Stat(rk); err != nil {
		return nil, fmt.Errorf("rootlesskit missing from the tools (%s): run `make tools`", s.Tools)
	}
	files["usr/bin/rootlesskit"] = layerEntry{host: rk}
	// newuidmap and newgidmap write the uid_map and gid_map of
	// rootlesskit's user namespace from /etc/subuid and /etc/subgid. The
	// kernel lets a writer do that only with CAP_SETUID (CAP_SETGID) in the
	// parent namespace and CAP_SYS_ADMIN in the new one, which its owner
	// (uid 1000) has and root without CAP_SYS_ADMIN (any unprivileged
	// container) has not. Setuid helpers built with capability support
	// (shadow's lib/idmapping.c under HAVE_SYS_CAPABILITY_H) switch back
	// to the caller's uid keeping only that capability, so upstream's
	// rootless Pods need no CAP_SYS_ADMIN. Debian's are built without it
	// (no capset, prctl or seteuid in the binary) and fail in the Pod:
	// "newuidmap: write to uid_map failed: Operation not permitted", as
	// they do on the host for uid 1000 with CAP_SYS_ADMIN dropped from the
	// bounding set. So here they carry their one capability as a file
	// capability instead of the setuid bit (shadow's fscaps install): they
	// run as uid 1000 with CAP_SETUID (CAP_SETGID) alone.
	for b, capability := range map[string]uint{"newuidmap": capSetUID, "newgidmap": capSetGID} {
		host, err := exec.LookPath(b)
		if err != nil {
			if host, err = exec.LookPath("/usr/bin/" + b); err != nil {
				return nil, fmt.Errorf("the rootless builder image needs %s on the host (Debian: apt-get install uidmap): %w", b, err)
			}
		}
		files["usr/bin/"+b] = layerEntry{host: host, mode: 0o755, xattrs: map[string]string{"security.capability": fileCapability(capability)}}
		libs, err := sharedLibraries(ctx, host)
		if err != nil {
			return nil, err
		}
		for _, l := range libs {
			files[strings.TrimPrefix(l, "/")] = layerEntry{host: l}
		}
	}
	user := layerEntry{dir: true, uid: 1000, gid: 1000}
	for name, e := range map[string]layerEntry{
		"etc/passwd": {data: []byte("root:x:0:0:root:/root:/sbin/nologin\nuser:x:1000:1000:user:/home/user:/sbin/nologin\n")},
		"etc/group":  {data: []byte("root:x:0:\nuser:x:1000:\n")},
		"etc/subuid": {data: []byte("user:100000:65536\n")},
		"etc/subgid": {data: []byte("user:100000:65536\n")},
		"tmp":        {dir: true}, "etc": {dir: true}, "etc/buildkit": {dir: true},
		"run": {dir: true}, "run/user": {dir: true}, "run/user/1000": {dir: true, mode: 0o700, uid: 1000, gid: 1000},
		"home": {dir: true}, "home/user": user, "home/user/.local": user, "home/user/.local/tmp": user,
		"home/user/.local/share": user, "home/user/.local/share/buildkit": user,
	} {
		files[name] = e
	}
	return files, nil
}

// The capabilities the id-map helpers need (linux/capability.h).
const (
	capSetGID = 6
	capSetUID = 7
)

// fileCapability is a security.capability extended attribute (struct
// vfs_cap_data, revision 2, little-endian) granting capability c,
// permitted and effective.
func fileCapability(c uint) string {
	const revision2, effective = 0x02000000, 0x1
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], revision2|effective)
	binary.LittleEndian.PutUint32(b[4:], 1<<c) // permitted, capabilities 0-31
	return string(b)
}

// builderFiles are the files both builder images hold: the pinned
// buildkitd and buildctl, and the host's runc with its libraries.
func (s *Stack) builderFiles(ctx context.Context) (map[string]layerEntry, error) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		if runc, err = exec.LookPath("/usr/sbin/runc"); err != nil {
			return nil, fmt.Errorf("the builder image needs runc on the host (Debian: apt-get install runc): %w", err)
		}
	}
	files := map[string]layerEntry{ // path in the image → its content
		"usr/bin/buildkitd": {host: filepath.Join(s.Tools, "buildkitd")},
		"usr/bin/buildctl":  {host: filepath.Join(s.Tools, "buildctl")},
		"usr/sbin/runc":     {host: runc},
	}
	libs, err := sharedLibraries(ctx, runc)
	if err != nil {
		return nil, err
	}
	for _, l := range libs {
		files[strings.TrimPrefix(l, "/")] = layerEntry{host: l}
	}
	return files, nil
}

// pushBuilderImage writes files as the one layer of an image run as
// config and pushes it to the mirror as image (a docker.io name).
func (s *Stack) pushBuilderImage(ctx context.Context, dirName, image string, files map[string]layerEntry, config v1.Config) (string, error) {
	if s.Mirror == nil {
		return "", errors.New("testenv: the builder image goes to the node's mirror: start the stack with a node")
	}
	dir := filepath.Join(s.Dir, dirName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// The layer stays an uncompressed tar: it only crosses loopback, and
	// gzip (here, then again on the node to unpack it) cost seconds of
	// CPU for each builder image of a test run, for no transfer gained.
	layer, err := writeLayer(filepath.Join(dir, "layer.tar"), files)
	if err != nil {
		return "", err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", err
	}
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: "amd64", OS: "linux", Config: config,
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{layer.hash}},
	})
	if err != nil {
		return "", err
	}
	tag, err := name.NewTag(s.Mirror.Host + "/" + image)
	if err != nil {
		return "", err
	}
	client, err := s.Mirror.HTTPClient()
	if err != nil {
		return "", err
	}
	if err := remote.Write(tag, img, remote.WithContext(ctx), remote.WithTransport(client.Transport.(*http.Transport))); err != nil {
		return "", fmt.Errorf("push the builder image %s to the mirror: %w", image, err)
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

// layerEntry is one entry of an image layer: a directory, a copy of a
// host file (symlinks followed) or data. mode 0 is 0o755 (0o1777 for
// tmp), 0o644 for data; xattrs are extended attributes (name → value).
type layerEntry struct {
	dir      bool
	host     string
	data     []byte
	mode     int64
	uid, gid int
	xattrs   map[string]string
}

// tarLayer is an uncompressed layer tar on disk, pushed as it is: its
// digest and diff ID are both the tar's sha256.
type tarLayer struct {
	path string
	hash v1.Hash
	size int64
}

func (l *tarLayer) Digest() (v1.Hash, error)             { return l.hash, nil }
func (l *tarLayer) DiffID() (v1.Hash, error)             { return l.hash, nil }
func (l *tarLayer) Size() (int64, error)                 { return l.size, nil }
func (l *tarLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l *tarLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.path) }
func (l *tarLayer) MediaType() (types.MediaType, error) {
	return types.DockerUncompressedLayer, nil
}

// writeLayer writes a layer tar holding entries (path in the image →
// entry), parents first, with the directories above an entry it lacks,
// and hashes it as it goes.
func writeLayer(path string, entries map[string]layerEntry) (*tarLayer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sum := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(f, sum))
	written := map[string]bool{}
	for _, in := range slices.Sorted(maps.Keys(entries)) {
		e := entries[in]
		if err := addParents(tw, in, written); err != nil {
			return nil, err
		}
		written[in] = true
		h := &tar.Header{Name: in, Mode: e.mode, Uid: e.uid, Gid: e.gid}
		if len(e.xattrs) > 0 {
			h.Format, h.PAXRecords = tar.FormatPAX, map[string]string{}
			for k, v := range e.xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		switch {
		case e.dir:
			h.Typeflag, h.Name = tar.TypeDir, in+"/"
			if h.Mode == 0 {
				h.Mode = 0o755
				if in == "tmp" {
					h.Mode = 0o1777
				}
			}
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
			continue
		case e.host == "":
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
			if h.Mode == 0 {
				h.Mode = 0o644
			}
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
			continue
		}
		src, err := os.Open(e.host)
		if err != nil {
			return nil, err
		}
		fi, err := src.Stat()
		if err != nil {
			src.Close()
			return nil, err
		}
		h.Typeflag, h.Size = tar.TypeReg, fi.Size()
		if h.Mode == 0 {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			src.Close()
			return nil, err
		}
		_, err = io.Copy(tw, src)
		src.Close()
		if err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	return &tarLayer{path: path, size: fi.Size(), hash: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum.Sum(nil))}}, nil
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
