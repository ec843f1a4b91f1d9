package options

import (
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/fail"
)

// BuildOptions are the build's inputs: what BuildKit builds, and how (not
// where: that is BuildKitOptions).
type BuildOptions struct {
	Context         string
	Dockerfile      string
	NoCache         bool
	Pull            bool
	BuildArgs       map[string]string
	Target          string
	Contexts        map[string]string
	Layout          string // --oci-layout; "" for CACHE/idopipe/oci/NAME
	Platforms       []string
	SourceDateEpoch string
	Provenance      string
	Labels          []string
	Secrets         []string
	CacheFrom       []string
	CacheTo         []string
	Extras          []string // --extra-image (release)

	// SecretEnv holds the values of the environment variables the --secret
	// flags name (Complete), for build.WithEnv.
	SecretEnv map[string]string
}

// BuildFlags say which of the optional build flags a command has.
type BuildFlags struct {
	Layout bool // --oci-layout (build; a release keeps its layout in the cache)
	Extras bool // --extra-image (release)
}

// AddFlags adds the build flags.
func (o *BuildOptions) AddFlags(fs *pflag.FlagSet, with BuildFlags) {
	fs.StringVar(&o.Context, "source", ".", "build context: a directory (the IDO checkout) or a git URL https://…/repo.git#ref; --context is kubectl's")
	fs.StringVarP(&o.Dockerfile, "file", "f", "", "Dockerfile path (default SOURCE/Dockerfile; inside the repository for a git --source)")
	fs.BoolVar(&o.NoCache, "no-cache", false, "do not use BuildKit's cache")
	fs.BoolVar(&o.Pull, "pull", false, "always resolve base images anew")
	fs.StringToStringVar(&o.BuildArgs, "build-arg", nil, "build argument KEY=VALUE (repeatable)")
	fs.StringVar(&o.Target, "target", "", "Dockerfile stage to build")
	fs.StringToStringVar(&o.Contexts, "build-context", nil, "named build context: NAME (what FROM or COPY --from names, e.g. golang:1.24.6) = oci-layout:///DIR[:TAG][@sha256:…], DIR or docker-image://REF (repeatable)")
	fs.StringSliceVar(&o.Platforms, "platform", nil, "platforms to build, e.g. linux/amd64,linux/arm64 (more than one makes an image index; default the daemon's; on a kube:// builder made with --platform, each on its own platform's builder)")
	fs.StringVar(&o.SourceDateEpoch, "source-date-epoch", "", "SOURCE_DATE_EPOCH for reproducible images, seconds since 1970 (default the last commit's time in a git checkout; none to turn off)")
	fs.StringVar(&o.Provenance, "provenance", "false", "attach BuildKit's SLSA provenance attestation: min, max or false")
	fs.StringArrayVar(&o.Labels, "label", nil, "image label KEY=VALUE (repeatable); org.opencontainers.image.{source,revision,version,created} are filled from git")
	fs.StringArrayVar(&o.Secrets, "secret", nil, "build secret id=ID,src=FILE or id=ID,env=VAR for RUN --mount=type=secret (repeatable)")
	fs.StringArrayVar(&o.CacheFrom, "cache-from", nil, "import build cache: type=registry,ref=HOST/REPO:buildcache or type=local,src=DIR (repeatable), or none. "+cacheDefaultHelp)
	fs.StringArrayVar(&o.CacheTo, "cache-to", nil, "export build cache: type=registry,ref=HOST/REPO:buildcache[,mode=max] or type=local,dest=DIR (repeatable), or none. "+cacheDefaultHelp)
	if with.Layout {
		fs.StringVar(&o.Layout, "oci-layout", "", "OCI image layout directory for the built image (default ~/.cache/idopipe/oci/IMAGE-NAME)")
	}
	if with.Extras {
		fs.StringArrayVar(&o.Extras, "extra-image", nil,
			"another image to build, push and deploy in the same run: name=NAME,source=DIR[,file=DOCKERFILE][,version=V] (repeatable)")
	}
}

// Complete reads the environment variables the --secret flags name: their
// values, and no others, reach the build.
func (o *BuildOptions) Complete(getenv Getenv) {
	o.SecretEnv = map[string]string{}
	for _, s := range o.Secrets {
		for _, f := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(f, "=")
			if !ok || v == "" {
				continue
			}
			switch strings.ToLower(k) {
			case "id", "env", "src", "source":
				if val := getenv.get(v); val != "" {
					o.SecretEnv[v] = val
				}
			}
		}
	}
}

// Validate refuses values the build could only fail on later: a label or
// a provenance mode that is not one, extra images without a name of their
// own, a cache list that says none and names a cache too.
func (o *BuildOptions) Validate(img ImageOptions) error {
	if err := build.ValidateProvenance(o.Provenance); err != nil {
		return err
	}
	for _, c := range []struct {
		flag string
		list []string
	}{{"--cache-from", o.CacheFrom}, {"--cache-to", o.CacheTo}} {
		if slices.Contains(c.list, CacheNone) && len(c.list) > 1 {
			return fail.New(fail.Usage, "drop "+c.flag+" none, or the other "+c.flag+" values",
				"%s none means no cache, but %s names one too", c.flag, c.flag+" "+strings.Join(slices.DeleteFunc(slices.Clone(c.list), func(v string) bool { return v == CacheNone }), " "))
		}
	}
	for _, l := range o.Labels {
		if k, _, ok := strings.Cut(l, "="); !ok || k == "" {
			return fail.New(fail.Usage, "write --label KEY=VALUE", "--label %q is not KEY=VALUE", l)
		}
	}
	_, err := o.extras(o.Spec(img))
	return err
}

// Spec is the main image's build.
func (o *BuildOptions) Spec(img ImageOptions) build.Spec {
	df := o.Dockerfile
	if df == "" && !build.IsGitURL(o.Context) {
		df = filepath.Join(o.Context, "Dockerfile")
	}
	labels := map[string]string{}
	for _, l := range o.Labels {
		k, v, _ := strings.Cut(l, "=")
		labels[k] = v
	}
	return build.Spec{
		Context: o.Context, Dockerfile: df, Name: img.Name, Version: img.Version,
		NoCache: o.NoCache, Pull: o.Pull, BuildArgs: o.BuildArgs, Target: o.Target,
		Contexts: o.Contexts, Layout: o.Layout,
		Platforms: o.Platforms, SourceDateEpoch: o.SourceDateEpoch, Provenance: o.Provenance,
		Labels: labels, Secrets: o.Secrets, CacheFrom: withoutNone(o.CacheFrom), CacheTo: withoutNone(o.CacheTo),
	}
}

// CacheNone is the --cache-from and --cache-to value that names no cache:
// given alone it turns off the default registry cache of a kube:// builder.
const CacheNone = "none"

const cacheDefaultHelp = "Default with a kube:// builder and no --cache-from, --cache-to or --no-cache: " +
	"both type=registry,ref=REGISTRY/OWNER/IMAGE-NAME:buildcache,mode=max (the GitHub Action's cache), " +
	"so any replica starts warm (a builder made with --platform: each platform its own tag, :buildcache-OS-ARCH); any --cache-from or --cache-to replaces it, and none alone turns it off"

func withoutNone(list []string) []string {
	if len(list) == 1 && list[0] == CacheNone {
		return nil
	}
	return list
}

// CacheRef is the registry cache of image name pushed to registry/owner:
// the :buildcache tag beside the image, as the GitHub Action's cache
// input makes it.
func CacheRef(registry, owner, name string) string {
	return registry + "/" + strings.ToLower(owner) + "/" + name + ":buildcache"
}

// DefaultCache gives each of specs, when the build runs on a builder in a
// cluster (inCluster) and names no cache of its own and no --no-cache,
// the registry cache beside its image (CacheRef) to import and to export
// in mode=max: a replica that never built the image, or lost its local
// cache with its Pod, starts warm from the registry. The export does not
// fail the build (ignore-error=true: the build reports it instead). It
// returns the line that says what was chosen and how to turn it off, or
// why there is no default cache ("" when none applies).
func (o *BuildOptions) DefaultCache(specs []build.Spec, inCluster bool, registry, owner string) string {
	if !inCluster || o.NoCache || len(o.CacheFrom) > 0 || len(o.CacheTo) > 0 {
		return ""
	}
	if owner == "" || registry == "" {
		return "no build cache: a kube:// builder caches to REGISTRY/OWNER/IMAGE-NAME:buildcache, and no owner is given (--owner or $GITHUB_REPOSITORY_OWNER); --cache-to none says no cache is wanted"
	}
	var refs []string
	for i := range specs {
		ref := CacheRef(registry, owner, specs[i].Name)
		specs[i].CacheFrom = []string{"type=registry,ref=" + ref}
		specs[i].CacheTo = []string{"type=registry,ref=" + ref + ",mode=max,ignore-error=true"}
		refs = append(refs, ref)
	}
	return "build cache " + strings.Join(refs, ", ") + " (type=registry,mode=max: imported and exported by default with a kube:// builder, with -OS-ARCH added to the tag on a builder per platform; --cache-to none turns it off)"
}

// Specs are the release's images: the main one first, its layout when
// none is given CACHE/idopipe/oci/NAME under cacheDir (kept from run to
// run, so that an unchanged rebuild finds its export there), then each
// --extra-image.
func (o *BuildOptions) Specs(img ImageOptions, cacheDir string) ([]build.Spec, error) {
	main := o.Spec(img)
	if main.Layout == "" {
		var err error
		if main.Layout, err = build.DefaultLayout(cacheDir, img.Name); err != nil {
			return nil, err
		}
	}
	extras, err := o.extras(main)
	if err != nil {
		return nil, err
	}
	return append([]build.Spec{main}, extras...), nil
}

// extras are the --extra-image images: each takes the main build's
// options (platforms, build args, labels, ...) but its own name, context,
// Dockerfile and version, no cache export of its own, and the main
// image's layout.
func (o *BuildOptions) extras(main build.Spec) ([]build.Spec, error) {
	var out []build.Spec
	for _, v := range o.Extras {
		s := main
		s.Layout = "" // the main image's layout, by the pipeline's rule
		s.Dockerfile, s.CacheTo, s.CacheFrom = "", nil, nil
		for _, kv := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(kv, "=")
			switch {
			case !ok:
				return nil, fail.New(fail.Usage, "write --extra-image name=NAME,source=DIR[,file=PATH][,version=V]", "--extra-image %q: %q is not key=value", v, kv)
			case k == "name":
				s.Name = val
			case k == "source":
				s.Context = val
			case k == "file":
				s.Dockerfile = val
			case k == "version":
				s.Version = val
			default:
				return nil, fail.New(fail.Usage, "use the keys name, source, file and version", "--extra-image %q: unknown key %q", v, k)
			}
		}
		if s.Name == "" || s.Name == main.Name || s.Context == main.Context && s.Dockerfile == "" {
			return nil, fail.New(fail.Usage, "give each extra image its own name and source (or file)", "--extra-image %q needs a name of its own and a source or file", v)
		}
		if s.Dockerfile == "" {
			s.Dockerfile = filepath.Join(s.Context, "Dockerfile")
		}
		out = append(out, s)
	}
	return out, nil
}
