package cluster

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/idopipe/idopipe/pkg/creds"
)

// kubectl create secret docker-registry --docker-server=ghcr.io
// --docker-username=me --docker-password=ghp_x writes exactly this.
const kubectlFormat = `{"auths":{"ghcr.io":{"username":"me","password":"ghp_x","auth":"bWU6Z2hwX3g="}}}`

func TestDockerConfigJSONIsKubectls(t *testing.T) {
	b, err := DockerConfigJSON("ghcr.io", creds.Credentials{Username: "me", Token: creds.NewSecret("ghp_x")})
	if err != nil || string(b) != kubectlFormat {
		t.Fatalf("got %s, %v; want %s", b, err, kubectlFormat)
	}
}

func FuzzDockerConfigJSON(f *testing.F) {
	f.Add("ghcr.io", "me", "ghp_x")
	f.Add("127.0.0.1:5000", "user:with:colons", "tok\"en")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, registry, user, token string) {
		b, err := DockerConfigJSON(registry, creds.Credentials{Username: user, Token: creds.NewSecret(token)})
		valid := utf8.ValidString(registry) && utf8.ValidString(user) && utf8.ValidString(token)
		if (err != nil) == valid {
			t.Fatalf("valid UTF-8 %v, error %v", valid, err)
		}
		if err != nil {
			if strings.Contains(err.Error(), token) && token != "" && len(token) > 3 {
				t.Fatal("the error carries the token")
			}
			return
		}
		var cfg dockerConfig
		if err := json.Unmarshal(b, &cfg); err != nil {
			t.Fatalf("not JSON: %v", err)
		}
		e, ok := cfg.Auths[registry]
		if !ok || len(cfg.Auths) != 1 {
			t.Fatalf("no single entry for %q", registry)
		}
		auth, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil || string(auth) != user+":"+token {
			t.Fatalf("auth does not decode to user:token")
		}
		if e.Username != user || e.Password != token {
			t.Fatalf("username or password do not round-trip")
		}
	})
}
