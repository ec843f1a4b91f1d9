package build_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/fail"
)

// TestRemoteMTLS: a tcp:// buildkitd that requires mTLS (as deploy/buildkit
// runs one) builds with the client certificate, and refuses a client
// without one.
func TestRemoteMTLS(t *testing.T) {
	testenv.NeedStack(t)
	dir, err := os.MkdirTemp("", "idopipe-bk-tls-")
	if err != nil {
		t.Fatal(err)
	}
	bk, err := testenv.StartBuildKitTLS(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bk.Stop(); _ = os.RemoveAll(dir) })

	src := writeFiles(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY f /f\n", "f": "x"})
	at := build.WithAddress(bk.Address)
	tls := build.WithTLS(build.TLS{CACert: bk.CACert, Cert: bk.ClientCert, Key: bk.ClientKey})
	if _, err := build.Build(context.Background(), spec(t, src), at, tls); err != nil {
		t.Fatalf("build over mTLS: %v", err)
	}
	_, err = build.Build(context.Background(), spec(t, src), at, build.WithTLS(build.TLS{CACert: bk.CACert}))
	if fail.ClassOf(err) != fail.Daemon || !strings.Contains(err.Error(), "cannot reach BuildKit at "+bk.Address) {
		t.Fatalf("without a client certificate: %v", err)
	}

	// The same through the command line's flags.
	r := cli(t, map[string]string{"BUILDKIT_HOST": ""}, "build", "--source", src, "--oci-layout", t.TempDir(),
		"--buildkit-host", bk.Address, "--buildkit-tls-ca", bk.CACert, "--buildkit-tls-cert", bk.ClientCert,
		"--buildkit-tls-key", bk.ClientKey, "--progress", "quiet")
	if r.code != 0 {
		t.Fatalf("idopipe build over mTLS: exit %d\n%s", r.code, r.stderr)
	}
}
