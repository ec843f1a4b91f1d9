package build

import (
	"os"
	"strings"

	"github.com/idopipe/idopipe/pkg/fail"
)

// Spec is what to build.
type Spec struct {
	// Context is the build context: a local directory, or a git URL
	// (https://…/repo.git#ref[:subdir], git@…) that BuildKit fetches itself.
	Context string
	// Dockerfile is the path to the Dockerfile; relative paths are taken
	// from the working directory. For a git context it is the path inside
	// the repository ("" for Dockerfile at its root).
	Dockerfile string
	Name       string            // image name, e.g. "planner"
	Version    string            // image tag, e.g. "0.4.0"
	NoCache    bool              // ignore BuildKit's cache
	Pull       bool              // always resolve base images anew
	BuildArgs  map[string]string // --build-arg
	Target     string            // --target stage
	// Contexts are named build contexts. NAME is what a FROM or COPY
	// --from names (golang, golang:1.24.6, ghcr.io/o/base@sha256:…);
	// oci-layout:///dir[:tag][@sha256:…] replaces it with an image from a
	// local OCI layout, a directory with that directory, and any other
	// value (docker-image://…) is handed to the frontend as is.
	Contexts map[string]string
	// Layout is the OCI image layout directory the image is exported to.
	Layout string

	// Platforms to build for (os/arch[/variant]); more than one makes an
	// image index. Empty is the daemon's own platform.
	Platforms []string
	// SourceDateEpoch, seconds since 1970 as a decimal string, clamps every
	// timestamp in the image (config, history, layer files) for
	// reproducible digests. "" takes the last commit's time when Context is
	// a git checkout; "none" turns it off.
	SourceDateEpoch string
	// Labels are image config labels. The OCI labels
	// org.opencontainers.image.{source,revision,version,created} are added
	// from git and Version when not given.
	Labels map[string]string
	// Secrets are build secrets for RUN --mount=type=secret:
	// id=ID,src=FILE or id=ID,env=VAR (buildx's form).
	Secrets []string
	// Provenance is the SLSA provenance attestation: "min", "max", or
	// "false"/"" for none.
	Provenance string
	// CacheFrom and CacheTo are BuildKit cache imports and exports in
	// buildx's form: type=registry,ref=HOST/REPO:buildcache[,mode=max] or
	// type=local,src=DIR / type=local,dest=DIR.
	CacheFrom []string
	CacheTo   []string
}

// Result is a built image.
type Result struct {
	Layout    string `json:"layout"`    // OCI image layout directory
	Digest    string `json:"digest"`    // sha256:… of the image manifest (or index)
	Ref       string `json:"ref"`       // name:version, as recorded in the layout
	MediaType string `json:"mediaType"` // of Digest: an image manifest or an index
	// Images are the platform images, one per platform, in the index's
	// order; attestation manifests are not among them.
	Images []Image `json:"images"`
	// Attestations are BuildKit's attestation manifests (provenance), each
	// naming the image it describes.
	Attestations []Attestation `json:"attestations,omitempty"`
	// SourceDateEpoch is the epoch the build was clamped to, if any.
	SourceDateEpoch string `json:"sourceDateEpoch,omitempty"`
	// Steps counts the build's steps, and Cached those BuildKit took from
	// its cache (its "CACHED" lines).
	Steps  int `json:"steps"`
	Cached int `json:"cached"`
	// CacheErrors are the cache exports that failed without failing the
	// build (ignore-error=true): "exporting cache to registry: ERROR".
	CacheErrors []string `json:"cacheErrors,omitempty"`
}

// Image is one platform's image in a result.
type Image struct {
	Platform string `json:"platform"` // os/arch[/variant]
	Digest   string `json:"digest"`
	// Builder is the daemon that built it when the build dialed one (a
	// builder in a cluster: kube://NAMESPACE/NAME, for a builder per
	// platform NAME-OS-ARCH), and Replica which of its replicas
	// (NAMESPACE/POD).
	Builder string `json:"builder,omitempty"`
	Replica string `json:"replica,omitempty"`
}

// Attestation is an attestation manifest and the image it is about.
type Attestation struct {
	Digest string `json:"digest"`
	For    string `json:"for"` // digest of the described image
}

// Platforms lists the result's platforms.
func (r Result) Platforms() []string {
	out := make([]string, 0, len(r.Images))
	for _, im := range r.Images {
		out = append(out, im.Platform)
	}
	return out
}

// IsGitURL tells a git context (fetched by BuildKit) from a local directory.
func IsGitURL(s string) bool {
	for _, p := range []string{"https://", "http://", "git://", "ssh://", "git@"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// Validate checks the inputs that exist before any daemon is contacted.
func (s Spec) Validate() error {
	if IsGitURL(s.Context) {
		if s.Dockerfile != "" && strings.HasPrefix(s.Dockerfile, "/") {
			return fail.New(fail.Usage, "give --file relative to the repository root", "Dockerfile %s is an absolute path, but the build context is the git repository %s", s.Dockerfile, s.Context)
		}
	} else {
		fi, err := os.Stat(s.Context)
		if err != nil || !fi.IsDir() {
			return fail.New(fail.Build, "pass --source DIR, the directory the Dockerfile builds from", "build context %s is not a directory", s.Context)
		}
		if fi, err := os.Stat(s.Dockerfile); err != nil || fi.IsDir() {
			return fail.New(fail.Build, "pass --file PATH to the Dockerfile", "Dockerfile %s does not exist", s.Dockerfile)
		}
	}
	if s.Name == "" || s.Version == "" {
		return fail.New(fail.Usage, "pass --image-name and --version", "image name and version must not be empty")
	}
	if s.Layout == "" {
		return fail.New(fail.Usage, "pass --oci-layout DIR", "no OCI layout directory to export to")
	}
	if err := s.validateContexts(); err != nil {
		return err
	}
	if _, err := ParsePlatforms(s.Platforms); err != nil {
		return err
	}
	if _, err := parseEpoch(s.SourceDateEpoch); err != nil {
		return err
	}
	if _, err := provenanceAttrs(s.Provenance); err != nil {
		return err
	}
	if _, err := parseSecrets(s.Secrets); err != nil {
		return err
	}
	if _, err := parseCacheEntries(s.CacheFrom, true); err != nil {
		return err
	}
	if _, err := parseCacheEntries(s.CacheTo, false); err != nil {
		return err
	}
	return nil
}

// validateContexts checks the named contexts: each names a directory that
// exists or a scheme, an OCI layout holds the image it names, and no two
// name the same thing (docker.io/library/golang:1.24.6 is golang:1.24.6).
func (s Spec) validateContexts() error {
	seen := map[string]string{}
	for name, src := range s.Contexts {
		key := contextName(name)
		if other, ok := seen[key]; ok {
			return fail.New(fail.Usage, "give one --build-context for it", "build contexts %s and %s name the same image %s", other, name, key)
		}
		seen[key] = name
		if _, _, err := namedContext(name, src); err != nil {
			return err
		}
		if !strings.Contains(src, "://") {
			if _, ok := localDir(src); !ok {
				return fail.New(fail.Build, "give an existing directory, oci-layout:///DIR or docker-image://REF",
					"build context %s=%s: directory %s does not exist", name, src, strings.TrimPrefix(src, "local:"))
			}
		}
	}
	return nil
}
