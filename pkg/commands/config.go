package commands

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/idopipe/idopipe/pkg/fail"
)

// applySettings fills every flag the command line left unset: first from
// the environment (IDOPIPE_<FLAG>, e.g. IDOPIPE_OWNER, IDOPIPE_LOCK_TIMEOUT),
// then from the config file. So flags override env, which overrides the file.
func applySettings(cmd *cobra.Command, env Env, configPath string, explicit bool) error {
	fs := cmd.Flags()
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "config" {
			return
		}
		key := "IDOPIPE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := env.Getenv(key); v != "" {
			if serr := setFlag(fs, f, []string{v}); serr != nil {
				err = fail.New(fail.Usage, "fix $"+key, "$%s: %v", key, serr)
			}
		}
	})
	if err != nil {
		return err
	}
	return applyConfigFile(cmd, configPath, explicit)
}

// applyConfigFile reads the YAML config: top-level keys are flag names
// (registry, owner, manifest, crds, platform, timeout, ...), plus images: a
// list of {name, source, file, version}, the first the main image and the
// others --extra-image. A key no command knows, or a bad value, is an error
// naming the key and its line.
func applyConfigFile(cmd *cobra.Command, path string, explicit bool) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return nil
	}
	if err != nil {
		return fail.Wrap(fail.Usage, errors.Unwrap(err), "check the --config path", "cannot read config %s", path)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fail.Wrap(fail.Usage, err, "fix the YAML", "config %s is not valid YAML", path)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return fail.New(fail.Usage, "write key: value pairs", "config %s:%d: the top level must be a mapping", path, top.Line)
	}
	known := allFlags(cmd.Root())
	flags := cmd.Flags()
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		at := fmt.Sprintf("%s:%d", path, k.Line)
		if k.Value == "images" {
			if err := applyImages(flags, v, path); err != nil {
				return err
			}
			continue
		}
		if !known[k.Value] {
			return fail.New(fail.Usage, "remove it, or see `idopipe release --help` for the keys (flag names)", "config %s: unknown key %q", at, k.Value)
		}
		f := flags.Lookup(k.Value)
		if f == nil || f.Changed {
			continue // another command's setting, or overridden by a flag or the environment
		}
		vals, err := scalars(v)
		if err != nil {
			return fail.New(fail.Usage, "give a value or a list of values", "config %s: key %q: %v", at, k.Value, err)
		}
		if err := setFlag(flags, f, vals); err != nil {
			return fail.New(fail.Usage, "fix the value", "config %s: key %q: %v", at, k.Value, err)
		}
	}
	return nil
}

// applyImages maps images: [{name, source, file, version}, ...] onto
// --image-name, --source, --file, --version and --extra-image.
func applyImages(flags *pflag.FlagSet, v *yaml.Node, path string) error {
	if v.Kind != yaml.SequenceNode {
		return fail.New(fail.Usage, "write images as a list of {name, source, file, version}", "config %s:%d: images must be a list", path, v.Line)
	}
	for i, img := range v.Content {
		if img.Kind != yaml.MappingNode {
			return fail.New(fail.Usage, "write each image as {name, source, file, version}", "config %s:%d: an image must be a mapping", path, img.Line)
		}
		var parts []string
		for j := 0; j+1 < len(img.Content); j += 2 {
			k, val := img.Content[j], img.Content[j+1]
			flag := map[string]string{"name": "image-name", "source": "source", "file": "file", "version": "version"}[k.Value]
			if flag == "" {
				return fail.New(fail.Usage, "use the keys name, source, file and version", "config %s:%d: unknown image key %q", path, k.Line, k.Value)
			}
			if i == 0 {
				if f := flags.Lookup(flag); f != nil && !f.Changed {
					if err := flags.Set(flag, val.Value); err != nil {
						return fail.New(fail.Usage, "fix the value", "config %s:%d: %s: %v", path, val.Line, k.Value, err)
					}
				}
				continue
			}
			parts = append(parts, k.Value+"="+val.Value)
		}
		if i > 0 {
			if f := flags.Lookup("extra-image"); f != nil && !f.Changed {
				if err := f.Value.Set(strings.Join(parts, ",")); err != nil {
					return fail.New(fail.Usage, "fix the image", "config %s:%d: %v", path, img.Line, err)
				}
			}
		}
	}
	return nil
}

func scalars(v *yaml.Node) ([]string, error) {
	switch v.Kind {
	case yaml.ScalarNode:
		return []string{v.Value}, nil
	case yaml.SequenceNode:
		out := make([]string, 0, len(v.Content))
		for _, c := range v.Content {
			if c.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: a list of plain values is expected", c.Line)
			}
			out = append(out, c.Value)
		}
		return out, nil
	}
	return nil, fmt.Errorf("line %d: a value or a list of values is expected", v.Line)
}

// setFlag sets f from values; list flags take each value, others one.
func setFlag(fs *pflag.FlagSet, f *pflag.Flag, values []string) error {
	if _, isList := f.Value.(pflag.SliceValue); !isList && len(values) != 1 {
		return fmt.Errorf("takes one value, not %d", len(values))
	}
	for _, v := range values {
		if err := fs.Set(f.Name, v); err != nil {
			return err
		}
	}
	return nil
}

func allFlags(root *cobra.Command) map[string]bool {
	known := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) { known[f.Name] = true })
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) { known[f.Name] = true })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return known
}
