package options

import (
	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/names"
)

// ImageOptions name the image: --image-name and --version.
type ImageOptions struct {
	Name    string
	Version string

	noVersion bool // the command takes no --version (deploy names its image by --image)
}

// AddFlags adds --image-name and --version.
func (o *ImageOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Name, "image-name", "planner", "image name; containers whose image has this name get the pushed image")
	fs.StringVar(&o.Version, "version", "0.4.0", "image version (the tag)")
}

// AddNameFlag adds --image-name only, for a command whose image reference
// carries its version (deploy --image).
func (o *ImageOptions) AddNameFlag(fs *pflag.FlagSet) {
	o.noVersion = true
	fs.StringVar(&o.Name, "image-name", "planner", "image name; containers whose image has this name get the deployed image")
}

// Validate refuses an empty or invalid image name and a version that is no
// valid tag.
func (o *ImageOptions) Validate() error {
	if o.Name == "" {
		return fail.New(fail.Usage, "pass --image-name NAME, e.g. planner", "no image name")
	}
	if err := names.ImageName("--image-name", o.Name); err != nil {
		return err
	}
	if !o.noVersion {
		return names.Tag("--version", o.Version)
	}
	return nil
}
