package build_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/fail"
)

// A Dockerfile that needs no emulation: each platform's image holds a file
// named by TARGETARCH.
const perArchDockerfile = `FROM scratch
ARG TARGETARCH
COPY hello-${TARGETARCH} /hello
`

// TestMultiPlatform: --platform linux/amd64,linux/arm64 gives one image
// index listing both platforms, each image holding its own architecture's
// file.
func TestMultiPlatform(t *testing.T) {
	testenv.NeedStack(t)
	dir := writeFiles(t, map[string]string{
		"Dockerfile": perArchDockerfile, "hello-amd64": "amd64\n", "hello-arm64": "arm64\n",
	})
	s := spec(t, dir)
	s.Platforms = []string{"linux/amd64,linux/arm64"}
	res, _ := mustBuild(t, s)

	if !strings.Contains(res.MediaType, "index") {
		t.Fatalf("media type %s, want an image index", res.MediaType)
	}
	if got, want := res.Platforms(), []string{"linux/amd64", "linux/arm64"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("result platforms %v, want %v", got, want)
	}
	idx := readIndex(t, res)
	var listed []string
	for _, d := range idx.Manifests {
		if d.Platform == nil {
			t.Fatalf("index entry %s has no platform", d.Digest)
		}
		listed = append(listed, d.Platform.String())
		img := readImage(t, res.Layout, d.Digest.String())
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != d.Platform.Architecture {
			t.Errorf("image %s: config architecture %s, index says %s", d.Digest, cf.Architecture, d.Platform.Architecture)
		}
		if got := fileInImage(t, img, "/hello"); got != d.Platform.Architecture+"\n" {
			t.Errorf("%s image holds /hello %q", d.Platform, got)
		}
	}
	if want := []string{"linux/amd64", "linux/arm64"}; !reflect.DeepEqual(listed, want) {
		t.Errorf("index lists %v, want %v", listed, want)
	}
}

func TestParsePlatforms(t *testing.T) {
	got, err := build.ParsePlatforms([]string{"linux/amd64, linux/arm64", "linux/arm/v7", "linux/amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"linux/amd64", "linux/arm64", "linux/arm/v7"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"linux/amd65", "lnux/amd64", "amd64", "linux/", "//"} {
		_, err := build.ParsePlatforms([]string{bad})
		var fe *fail.Error
		if !errors.As(err, &fe) || fe.Class != fail.Usage || !strings.Contains(err.Error(), "--platform") {
			t.Errorf("%q: got %v, want a usage error naming --platform", bad, err)
		}
	}
}
