package names

import (
	"errors"
	"strings"
	"testing"

	"github.com/idopipe/idopipe/pkg/fail"
)

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string // "" for valid; else a part of the message
	}{
		{"tag", Tag("--version", "0.4.0"), ""},
		{"tag with build metadata", Tag("--version", "0.4.0+build1"), "use a tag such as 0.4.0-build1"},
		{"tag with a slash", Tag("--tag", "a/b"), `--tag "a/b" is not a valid image tag`},
		{"tag starting with a dot", Tag("--tag", ".x"), "not starting with '.'"},
		{"tag too long", Tag("--tag", strings.Repeat("a", 129)), "up to 128"},
		{"empty tag", Tag("--version", ""), "not a valid image tag"},
		{"image name", ImageName("--image-name", "planner"), ""},
		{"image name with capitals", ImageName("--image-name", "Planner"), "not a valid image name"},
		{"ghcr owner", Owner("--owner", "ghcr.io", "My-Org"), ""},
		{"ghcr owner with underscore", Owner("--owner", "ghcr.io", "My_Org"), "no GitHub user or organisation name"},
		{"ghcr owner with double hyphen", Owner("--owner", "ghcr.io", "my--org"), "single inner hyphens"},
		{"ghcr owner ending in hyphen", Owner("--owner", "ghcr.io", "org-"), "e.g. my-org"},
		{"ghcr owner too long", Owner("--owner", "ghcr.io", strings.Repeat("a", 40)), "at most 39"},
		{"other registry owner with underscore", Owner("--owner", "127.0.0.1:5000", "My_Org"), ""},
		{"other registry owner with space", Owner("--owner", "127.0.0.1:5000", "bad owner"), "not a valid registry owner"},
		{"namespace", Namespace("-n", "ido"), ""},
		{"namespace with capitals", Namespace("-n", "Bad_NS"), `-n "Bad_NS" is not a valid namespace name`},
		{"namespace too long", Namespace("-n", strings.Repeat("a", 64)), "at most 63"},
		{"secret", SecretName("--secret-name", "ghcr-secret"), ""},
		{"secret with underscore", SecretName("--secret-name", "Bad_Secret"), "e.g. ghcr-secret"},
		{"label value", LabelValue("image", "planner-0.4.0"), ""},
		{"label value with slash", LabelValue("image", "a/b"), "not a valid label value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == "" {
				if tc.err != nil {
					t.Fatalf("refused: %v", tc.err)
				}
				return
			}
			var fe *fail.Error
			if !errors.As(tc.err, &fe) || fe.Class != fail.Usage {
				t.Fatalf("want a usage error, got %v", tc.err)
			}
			if msg := fe.Msg + " (" + fe.Fix + ")"; !strings.Contains(msg, tc.want) {
				t.Errorf("%q lacks %q", msg, tc.want)
			}
			if strings.Contains(fe.Msg, "\n") {
				t.Errorf("not one line: %q", fe.Msg)
			}
		})
	}
}
