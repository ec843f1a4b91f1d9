package build

import (
	"slices"
	"strings"

	bkclient "github.com/moby/buildkit/client"
	"github.com/tonistiigi/go-csvvalue"

	"github.com/idopipe/idopipe/pkg/fail"
)

const cacheFix = "use type=registry,ref=HOST/REPO:buildcache or type=local,src=DIR (--cache-from) / type=local,dest=DIR (--cache-to)"

// parseCacheEntries reads --cache-from (imports) or --cache-to (exports) in
// buildx's form. A bare reference means type=registry,ref=REF.
func parseCacheEntries(in []string, isImport bool) ([]bkclient.CacheOptionsEntry, error) {
	flag := "--cache-to"
	if isImport {
		flag = "--cache-from"
	}
	var out []bkclient.CacheOptionsEntry
	for _, v := range in {
		if v == "" {
			continue
		}
		if !strings.Contains(v, "=") {
			v = "type=registry,ref=" + v
		}
		fields, err := csvvalue.Fields(v, nil)
		if err != nil {
			return nil, fail.Wrap(fail.Usage, err, cacheFix, "bad %s %q", flag, v)
		}
		e := bkclient.CacheOptionsEntry{Attrs: map[string]string{}}
		for _, f := range fields {
			k, val, ok := strings.Cut(f, "=")
			if !ok {
				return nil, fail.New(fail.Usage, cacheFix, "bad %s %q: %q is not KEY=VALUE", flag, v, f)
			}
			if strings.ToLower(k) == "type" {
				e.Type = val
			} else {
				e.Attrs[k] = val
			}
		}
		switch e.Type {
		case "registry":
			if e.Attrs["ref"] == "" {
				return nil, fail.New(fail.Usage, cacheFix, "bad %s %q: a registry cache needs ref=", flag, v)
			}
		case "local":
			key := "dest"
			if isImport {
				key = "src"
			}
			if e.Attrs[key] == "" {
				return nil, fail.New(fail.Usage, cacheFix, "bad %s %q: a local cache needs %s=DIR", flag, v, key)
			}
		case "inline":
		case "":
			return nil, fail.New(fail.Usage, cacheFix, "bad %s %q: no type=", flag, v)
		default:
			return nil, fail.New(fail.Usage, cacheFix, "bad %s %q: cache type %q is not registry, local or inline", flag, v, e.Type)
		}
		out = append(out, e)
	}
	return out, nil
}

// CacheHosts lists the registry hosts that s's registry caches name: the
// hosts buildkitd will ask the session's Credentials about.
func CacheHosts(s Spec) []string {
	var hosts []string
	for _, list := range [][]string{s.CacheFrom, s.CacheTo} {
		for _, v := range list {
			if !strings.Contains(v, "=") {
				v = "type=registry,ref=" + v
			}
			fields, err := csvvalue.Fields(v, nil)
			if err != nil {
				continue
			}
			isRegistry, ref := false, ""
			for _, f := range fields {
				k, val, _ := strings.Cut(f, "=")
				switch k {
				case "type":
					isRegistry = val == "registry"
				case "ref":
					ref = val
				}
			}
			if isRegistry && ref != "" {
				host, _, _ := strings.Cut(ref, "/")
				if !slices.Contains(hosts, host) {
					hosts = append(hosts, host)
				}
			}
		}
	}
	return hosts
}
