package build

import (
	"os"
	"strings"

	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/tonistiigi/go-csvvalue"

	"github.com/idopipe/idopipe/pkg/fail"
)

const secretFix = "use --secret id=ID,src=FILE or --secret id=ID,env=VAR"

// maxSecretSize is BuildKit's own limit for one secret.
const maxSecretSize = secretsprovider.MaxSecretSize

// secretSource is one --secret: read from a file or an environment variable.
type secretSource struct {
	ID, File, Env string
}

// parseSecrets reads buildx's --secret form: id=ID,src=FILE (also
// source=), id=ID,env=VAR, optionally type=file|env; a file must exist.
func parseSecrets(in []string) ([]secretSource, error) {
	var out []secretSource
	seen := map[string]bool{}
	for _, v := range in {
		fields, err := csvvalue.Fields(v, nil)
		if err != nil {
			return nil, fail.Wrap(fail.Usage, err, secretFix, "bad --secret %q", v)
		}
		var s secretSource
		typ := ""
		for _, f := range fields {
			k, val, ok := strings.Cut(f, "=")
			if !ok {
				return nil, fail.New(fail.Usage, secretFix, "bad --secret %q: %q is not KEY=VALUE", v, f)
			}
			switch strings.ToLower(k) {
			case "type":
				typ = val
			case "id":
				s.ID = val
			case "src", "source":
				s.File = val
			case "env":
				s.Env = val
			default:
				return nil, fail.New(fail.Usage, secretFix, "bad --secret %q: unknown key %q", v, k)
			}
		}
		switch {
		case typ != "" && typ != "file" && typ != "env":
			return nil, fail.New(fail.Usage, secretFix, "bad --secret %q: type must be file or env", v)
		case typ == "env" && s.Env == "":
			s.Env, s.File = s.File, ""
			if s.Env == "" {
				s.Env = s.ID
			}
		case s.File == "" && s.Env == "":
			s.File = s.ID
		}
		if s.ID == "" {
			return nil, fail.New(fail.Usage, secretFix, "bad --secret %q: no id", v)
		}
		if seen[s.ID] {
			return nil, fail.New(fail.Usage, "give each --secret its own id", "secret id %q given twice", s.ID)
		}
		seen[s.ID] = true
		if s.File != "" {
			fi, err := os.Stat(s.File)
			if err != nil || fi.IsDir() {
				return nil, fail.New(fail.Usage, secretFix, "secret %q: file %s does not exist", s.ID, s.File)
			}
			if fi.Size() > maxSecretSize {
				return nil, fail.New(fail.Usage, "pass a smaller file", "secret %q: %s is larger than BuildKit's limit of %d bytes", s.ID, s.File, maxSecretSize)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// secretsAttachable reads the secrets now and serves them to the build's
// RUN --mount=type=secret steps; their values never reach the logs.
func secretsAttachable(in []string, env map[string]string) (session.Attachable, error) {
	srcs, err := parseSecrets(in)
	if err != nil || len(srcs) == 0 {
		return nil, err
	}
	m := map[string][]byte{}
	for _, s := range srcs {
		if s.Env != "" {
			v := env[s.Env]
			if v == "" {
				return nil, fail.New(fail.Usage, "export "+s.Env+", or read the secret from a file with src=", "secret %q: $%s is empty", s.ID, s.Env)
			}
			m[s.ID] = []byte(v)
			continue
		}
		b, err := os.ReadFile(s.File)
		if err != nil {
			return nil, fail.Wrap(fail.Usage, err, secretFix, "secret %q: cannot read %s", s.ID, s.File)
		}
		m[s.ID] = b
	}
	return secretsprovider.FromMap(m), nil
}
