package build

import (
	"testing"

	bkclient "github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"
)

// TestCacheErrors: a failed cache export vertex (BuildKit goes on after it
// with ignore-error=true) is reported with its error; other failed
// vertices and successful exports are not.
func TestCacheErrors(t *testing.T) {
	r := newRecorder()
	r.record(&bkclient.SolveStatus{Vertexes: []*bkclient.Vertex{
		{Digest: digest.FromString("a"), Name: "exporting cache to registry", Error: "dial tcp 127.0.0.1:5000: connect: connection refused"},
		{Digest: digest.FromString("b"), Name: "exporting cache to client directory"},
		{Digest: digest.FromString("c"), Name: "importing cache manifest from r.io/o/p:buildcache", Error: "not found"},
		{Digest: digest.FromString("d"), Name: "[2/3] RUN make", Error: "exit code: 2"},
	}})
	got := r.cacheErrors()
	if len(got) != 1 || got[0] != "exporting cache to registry: dial tcp 127.0.0.1:5000: connect: connection refused" {
		t.Errorf("cache errors %q", got)
	}
}
