package options

import (
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/names"
)

// PushOptions are the push's own flags, shared by push and release.
type PushOptions struct {
	Tags      []string
	MountFrom []string

	Mounts []name.Repository // MountFrom parsed against the target registry (Validate)
}

// AddFlags adds --tag and --mount-from.
func (o *PushOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&o.Tags, "tag", nil, "extra tag for the same image, e.g. latest (repeatable)")
	fs.StringArrayVar(&o.MountFrom, "mount-from", nil,
		"repository of the same registry that may hold some of the image's blobs (a base image): the registry mounts them instead of an upload; OWNER/NAME or REGISTRY/OWNER/NAME (repeatable)")
}

// Validate parses --mount-from against the target registry: OWNER/NAME
// is a repository of registryHost, and a repository of another registry is
// refused (a registry mounts only blobs it holds); every --tag must be a
// valid tag.
func (o *PushOptions) Validate(registryHost string) error {
	for _, t := range o.Tags {
		if err := names.Tag("--tag", t); err != nil {
			return err
		}
	}
	o.Mounts = nil
	if reg, err := name.NewRegistry(registryHost); err == nil {
		registryHost = reg.RegistryStr() // docker.io is index.docker.io
	}
	for _, v := range o.MountFrom {
		// OWNER/NAME is on the target registry, as docker reads a reference.
		repo, err := name.NewRepository(strings.ToLower(v), name.WithDefaultRegistry(registryHost))
		if err != nil {
			return fail.New(fail.Usage, "write --mount-from OWNER/NAME or REGISTRY/OWNER/NAME, without a tag or digest",
				"--mount-from %q is not a repository: %v", v, err)
		}
		if repo.RegistryStr() != registryHost {
			return fail.New(fail.Usage, "name a repository of "+registryHost+": a registry mounts only blobs it holds",
				"--mount-from %q is on registry %s, not %s", v, repo.RegistryStr(), registryHost)
		}
		o.Mounts = append(o.Mounts, repo)
	}
	return nil
}
