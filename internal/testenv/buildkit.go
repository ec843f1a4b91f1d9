package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bkclient "github.com/moby/buildkit/client"
)

// BuildKit is a buildkitd with the OCI worker (runc) on a unix socket.
type BuildKit struct {
	Address string // unix:///…/buildkitd.sock
	Dir     string
	proc    *process
}

// startBuildKit runs buildkitd with state under dir; registries maps a
// loopback registry host to the CA file buildkitd must trust for it.
func startBuildKit(ctx context.Context, tools, dir string, registries map[string]string) (*BuildKit, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "buildkitd.sock")
	snapshotter := os.Getenv("IDOPIPE_TEST_SNAPSHOTTER")
	if snapshotter == "" {
		snapshotter = "overlayfs"
	}
	cfg := fmt.Sprintf(`root = %q
[grpc]
  address = [%q]
[worker.oci]
  enabled = true
  snapshotter = %q
  binary = "runc"
  gc = true
[worker.containerd]
  enabled = false
`, filepath.Join(dir, "root"), "unix://"+sock, snapshotter)
	for host, ca := range registries {
		// BuildKit treats loopback registries as plain HTTP unless told.
		cfg += fmt.Sprintf("[registry.%q]\n  http = false\n  ca = [%q]\n", host, ca)
	}
	cfgPath := filepath.Join(dir, "buildkitd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	b := &BuildKit{Address: "unix://" + sock, Dir: dir}
	var err error
	// runc lives in /usr/sbin on Debian, which a non-login PATH may lack.
	b.proc, err = startProcess(dir, "buildkitd", filepath.Join(tools, "buildkitd"),
		[]string{"--config", cfgPath}, []string{"PATH=" + os.Getenv("PATH") + ":/usr/sbin:/sbin"})
	if err != nil {
		return nil, err
	}
	err = b.proc.waitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		if _, err := os.Stat(sock); err != nil {
			return err
		}
		c, err := bkclient.New(ctx, b.Address)
		if err != nil {
			return err
		}
		defer c.Close()
		ws, err := c.ListWorkers(ctx)
		if err != nil {
			return err
		}
		if len(ws) == 0 {
			return fmt.Errorf("no workers")
		}
		return nil
	})
	if err != nil {
		b.Stop()
		return nil, err
	}
	return b, nil
}

// Stop ends buildkitd.
func (b *BuildKit) Stop() {
	if b != nil {
		b.proc.stop(10 * time.Second)
	}
}
