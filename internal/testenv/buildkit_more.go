package testenv

import "context"

// StartBuildKit starts one more buildkitd with empty state under dir, for
// tests that need a daemon of their own (a cold cache); registries maps a
// loopback registry host to the CA file it must trust, e.g.
// {s.Registry.Host: s.Registry.CAFile}. Stop it with Stop.
func StartBuildKit(ctx context.Context, dir string, registries map[string]string) (*BuildKit, error) {
	tools, err := ToolsDir()
	if err != nil {
		return nil, err
	}
	return startBuildKit(ctx, tools, dir, registries)
}

// RegistryCAs is what StartBuildKit needs to trust the stack's registry.
func (s *Stack) RegistryCAs() map[string]string {
	if s.Registry == nil {
		return nil
	}
	return map[string]string{s.Registry.Host: s.Registry.CAFile}
}
