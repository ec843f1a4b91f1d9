package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The sign group: what signing and verifying add to a push and a
// verify-pull, beside cosign doing the same against the same registry.
var signCases = []caseDef{
	{ID: "sign", Title: "sign the pushed planner image (index, platform image, provenance) with a cosign key pair", Tools: []string{"idopipe", "idopipe (unsigned)", "cosign sign"},
		Note: "`idopipe push --sign --key cosign.key` of an image already in a new repository (a no-op push, then the signatures) vs the same `idopipe push` without --sign vs `cosign sign --key cosign.key --tlog-upload=false --recursive` (index and platform image; cosign does not sign BuildKit's provenance); the key's scrypt decryption is included in both"},
	{ID: "verify-signature", Title: "verify the signature of the pushed digest", Tools: []string{"idopipe", "idopipe (unsigned)", "cosign verify"},
		Note: "`idopipe verify-pull --verify-key cosign.pub` (pull check, signature, signed provenance) vs `idopipe verify-pull` vs `cosign verify --key cosign.pub --insecure-ignore-tlog --offline` (no Rekor here)"},
}

func init() { cases = append(cases, signCases...) }

func (b *bench) groupSign() error {
	cosign := filepath.Join(b.cfg.Tools, "cosign")
	if _, err := os.Stat(cosign); err != nil {
		return errors.New("cosign is not in the tools directory: build/tools/build.sh links it")
	}
	const password = "bench key password"
	keys := filepath.Join(b.work, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return err
	}
	pwEnv := "COSIGN_PASSWORD=" + password
	if err := b.untimed("keys", []string{b.cfg.Idopipe, "keys", "generate", "--force", "--output-dir", keys}, pwEnv); err != nil {
		return err
	}
	key, pub := filepath.Join(keys, "cosign.key"), filepath.Join(keys, "cosign.pub")
	root := filepath.Join(b.work, "trusted_root.json")
	if err := os.WriteFile(root, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644); err != nil {
		return err
	}
	layout := filepath.Join(b.work, "sign-oci")
	out, err := b.output("sign-build", cmd{argv: b.idopipe("build", "--source", b.env["SRC"],
		"--build-context", "golang:1.24.6=oci-layout://"+b.env["BUSYBOX"], "--oci-layout", layout, "--provenance", "min", "--progress", "quiet")})
	if err != nil {
		return err
	}
	digest := lastDigest(out)
	if digest == "" {
		return errors.New("sign: the build printed no digest")
	}
	cosignEnv := b.peerEnv(pwEnv, "TUF_ROOT="+filepath.Join(b.work, "tuf"))
	reg := b.env["REGISTRY"]
	for r := 0; r < b.cfg.Runs; r++ {
		repos := map[string]string{}
		for _, tool := range signCases[0].Tools {
			name := fmt.Sprintf("sign%d-%s", r, strings.Fields(tool)[0])
			if tool == "idopipe (unsigned)" {
				name += "-unsigned"
			}
			repos[tool] = reg + "/" + b.owner + "/" + name + ":0.4.0"
			if err := b.untimed("push-"+name, b.idopipe("push", "--oci-layout", layout, "--digest", digest,
				"--registry", reg, "--registry-ca", b.env["CA"], "--owner", b.owner, "--image-name", name, "--progress", "quiet")); err != nil {
				return err
			}
		}
		push := func(tool string, extra ...string) cmd {
			name := strings.TrimSuffix(strings.TrimPrefix(repos[tool], reg+"/"+b.owner+"/"), ":0.4.0")
			args := append([]string{"push", "--oci-layout", layout, "--digest", digest, "--registry", reg, "--registry-ca", b.env["CA"],
				"--owner", b.owner, "--image-name", name, "--progress", "quiet"}, extra...)
			return cmd{json: true, argv: b.idopipe(args...), env: []string{pwEnv}}
		}
		for i, tool := range rotate(signCases[0].Tools, r) {
			var c cmd
			switch tool {
			case "idopipe":
				c = push(tool, "--sign", "--key", key)
			case "idopipe (unsigned)":
				c = push(tool)
			case "cosign sign":
				ref := strings.TrimSuffix(repos[tool], ":0.4.0") + "@" + digest
				c = cmd{argv: []string{cosign, "sign", "--key", key, "--tlog-upload=false", "--yes", "--recursive", "--registry-cacert", b.env["CA"], ref}, env: cosignEnv}
			}
			b.measure("sign", tool, r, i, c)
		}
		signed := repos["idopipe"]
		for i, tool := range rotate(signCases[1].Tools, r) {
			var c cmd
			switch tool {
			case "idopipe":
				c = cmd{json: true, argv: b.idopipe("verify-pull", "--registry-ca", b.env["CA"], signed, "--digest", digest, "--verify-key", pub)}
			case "idopipe (unsigned)":
				c = cmd{json: true, argv: b.idopipe("verify-pull", "--registry-ca", b.env["CA"], signed, "--digest", digest)}
			case "cosign verify":
				c = cmd{argv: []string{cosign, "verify", "--key", pub, "--insecure-ignore-tlog=true", "--offline=true", "--trusted-root", root,
					"--registry-cacert", b.env["CA"], strings.TrimSuffix(signed, ":0.4.0") + "@" + digest}, env: cosignEnv}
			}
			b.measure("verify-signature", tool, r, i, c)
		}
	}
	return nil
}

// lastDigest is the digest in the result object of idopipe -o json output.
func lastDigest(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var res struct {
		Result struct {
			Digest string `json:"digest"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		return ""
	}
	return res.Result.Digest
}
