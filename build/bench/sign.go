package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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
	{ID: "sign-keyless", Title: "sign the pushed planner image keyless (Fulcio certificate, timestamp authority, Rekor v2 on loopback)", Tools: []string{"idopipe", "cosign v3 sign"},
		Note: "`idopipe push --sign` with the runner's OIDC token endpoint (the stack's GitHub-shaped issuer): a no-op push, one Fulcio certificate, a bundle per manifest and for the provenance vs `cosign sign --recursive --identity-token --signing-config` (v3.1.3; index and platform image, no provenance); each run in a new repository"},
	{ID: "verify-keyless", Title: "verify the keyless signature of the pushed digest by the workflow's identity", Tools: []string{"idopipe", "cosign v3 verify"},
		Note: "`idopipe verify-pull --certificate-identity … --trusted-root` (pull check, bundle referrers, certificate chain, timestamp, log entry) vs `cosign verify --certificate-identity … --trusted-root --insecure-ignore-sct` (v3.1.3)"},
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
		if err := b.keyless(r, layout, digest); err != nil {
			return err
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

// keyless is run r of the keyless cases, when the stack has its Sigstore
// instance (cmd/localstack exports it) and cosign v3 is built.
func (b *bench) keyless(r int, layout, digest string) error {
	cosign3 := filepath.Join(b.cfg.Tools, "cosign3")
	fulcio := os.Getenv("IDOPIPE_TEST_FULCIO_URL")
	if _, err := os.Stat(cosign3); err != nil || fulcio == "" {
		return errors.New("the keyless cases need cosign3 (make tools) and the stack's Sigstore instance (cmd/localstack)")
	}
	reg := b.env["REGISTRY"]
	trusted := os.Getenv("IDOPIPE_TEST_TRUSTED_ROOT")
	instance := []string{"--fulcio-url", fulcio, "--rekor-url", os.Getenv("IDOPIPE_TEST_REKOR_URL"),
		"--timestamp-url", os.Getenv("IDOPIPE_TEST_TSA_URL"), "--trusted-root", trusted}
	repos := map[string]string{}
	for _, tool := range signCases[2].Tools {
		name := fmt.Sprintf("keyless%d-%s", r, strings.Fields(tool)[0])
		repos[tool] = reg + "/" + b.owner + "/" + name
		if err := b.untimed("push-"+name, b.idopipe("push", "--oci-layout", layout, "--digest", digest,
			"--registry", reg, "--registry-ca", b.env["CA"], "--owner", b.owner, "--image-name", name, "--progress", "quiet")); err != nil {
			return err
		}
	}
	// cosign takes the token from a file; fetched from the runner's
	// endpoint untimed, as idopipe's own fetch is part of its time.
	tokenFile, err := b.actionsToken()
	if err != nil {
		return err
	}
	cosignEnv := b.peerEnv("TUF_ROOT=" + filepath.Join(b.work, "tuf"))
	for i, tool := range rotate(signCases[2].Tools, r) {
		var c cmd
		switch tool {
		case "idopipe":
			name := strings.TrimPrefix(repos[tool], reg+"/"+b.owner+"/")
			c = cmd{json: true, argv: b.idopipe(append([]string{"push", "--oci-layout", layout, "--digest", digest, "--registry", reg,
				"--registry-ca", b.env["CA"], "--owner", b.owner, "--image-name", name, "--version", "0.4.0", "--progress", "quiet", "--sign"}, instance...)...)}
		case "cosign v3 sign":
			c = cmd{argv: []string{cosign3, "sign", "--yes", "--recursive", "--identity-token", tokenFile, "--signing-config", os.Getenv("IDOPIPE_TEST_SIGNING_CONFIG"),
				"--trusted-root", trusted, "--registry-cacert", b.env["CA"], repos[tool] + "@" + digest}, env: cosignEnv}
		}
		b.measure("sign-keyless", tool, r, i, c)
	}
	identity, issuer := os.Getenv("IDOPIPE_TEST_ACTIONS_SAN"), os.Getenv("IDOPIPE_TEST_OIDC_ISSUER")
	signed := repos["idopipe"] + "@" + digest
	for i, tool := range rotate(signCases[3].Tools, r) {
		var c cmd
		switch tool {
		case "idopipe":
			c = cmd{json: true, argv: b.idopipe("verify-pull", "--registry-ca", b.env["CA"], signed, "--certificate-identity", identity,
				"--certificate-oidc-issuer", issuer, "--trusted-root", trusted)}
		case "cosign v3 verify":
			c = cmd{argv: []string{cosign3, "verify", "--certificate-identity", identity, "--certificate-oidc-issuer", issuer,
				"--trusted-root", trusted, "--insecure-ignore-sct", "--registry-cacert", b.env["CA"], signed}, env: cosignEnv}
		}
		b.measure("verify-keyless", tool, r, i, c)
	}
	return nil
}

// actionsToken fetches an OIDC token from the runner's endpoint
// ($ACTIONS_ID_TOKEN_REQUEST_URL, as a job with id-token: write has it)
// into a file of mode 600, for cosign's --identity-token.
func (b *bench) actionsToken() (string, error) {
	url, reqTok := os.Getenv("ACTIONS_ID_TOKEN_REQUEST_URL"), os.Getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	if url == "" || reqTok == "" {
		return "", errors.New("no ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN: run under cmd/localstack")
	}
	req, err := http.NewRequestWithContext(b.ctx, http.MethodGet, url+"&audience=sigstore", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "bearer "+reqTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var v struct {
		Value string `json:"value"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK || v.Value == "" {
		return "", fmt.Errorf("the runner's token endpoint answered %s", resp.Status)
	}
	p := filepath.Join(b.work, "oidc-token")
	return p, os.WriteFile(p, []byte(v.Value), 0o600)
}
