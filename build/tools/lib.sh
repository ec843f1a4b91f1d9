# Shared by build/tools/build.sh and build/bench/tools.sh: build a tool from
# its wrapper module under build/tools into the cache outside the repository.
# Callers set $here (build/tools) and $cache.

# ldflags_kube VERSION: -X flags that make a Kubernetes binary report VERSION.
ldflags_kube() {
  local v=$1 p=k8s.io/component-base/version
  local minor=${v#v1.}; minor=${minor%%.*}
  echo "-s -w -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
}

# tool_dir NAME prints the cache directory for wrapper module NAME, keyed by
# its go.mod and go.sum: a changed pin rebuilds only that tool.
tool_dir() {
  local h
  h=$(cat "$here/$1/go.mod" "$here/$1/go.sum" | sha256sum | cut -c1-12)
  echo "$cache/tools/$1-$h"
}

# build NAME OUT PKG [LDFLAGS]: builds PKG from wrapper module NAME.
build() {
  local name=$1 out=$2 pkg=$3 ldflags=${4:--s -w}
  local dir; dir=$(tool_dir "$name")
  [ -x "$dir/$out" ] && return 0
  mkdir -p "$dir"
  echo "building $out ($pkg) into $dir" >&2
  local start=$SECONDS
  (cd "$here/$name" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dir/$out.tmp" "$pkg")
  mv "$dir/$out.tmp" "$dir/$out"
  echo "built $out in $((SECONDS - start))s" >&2
}

# mod_version NAME MODULE: the version wrapper NAME pins MODULE at.
mod_version() { (cd "$here/$1" && go list -m -f '{{.Version}}' "$2"); }
