// Package version reports idopipe's own version: the module version (set by
// `go install …@vX` or -ldflags) and the VCS commit when built from a checkout.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is set with -ldflags "-X github.com/idopipe/idopipe/pkg/version.Version=v1.2.3".
var Version = ""

// Info describes this binary.
type Info struct {
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
	Go      string `json:"go"`
}

// Get reads the build information.
func Get() Info {
	i := Info{Version: Version, Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Commit = s.Value
			case "vcs.modified":
				if s.Value == "true" && i.Commit != "" {
					i.Commit += "-dirty"
				}
			}
		}
	}
	if i.Version == "" {
		i.Version = "devel"
	}
	return i
}

func (i Info) String() string {
	s := "idopipe " + i.Version
	if i.Commit != "" {
		s += " (" + i.Commit + ")"
	}
	return fmt.Sprintf("%s %s", s, i.Go)
}
