# idopipe — see README.md.
#
#   make            build bin/idopipe
#   make demo       a whole release against a fresh local stack
#   make test       every test, against a fresh local stack
#   make test-unit  the fast tier: every test that needs no stack (go test -short)
#   make tools      build the stack's pinned tools (cached outside the repo)
#
# The stack's tools (buildkitd, registry, kube-apiserver, etcd, kube-scheduler,
# kube-controller-manager, kubelet) are pinned by the wrapper modules under build/tools and cached under
# $(IDOPIPE_CACHE); the first build took 18 min 47 s on a fresh 2-core machine, later ones
# reuse the cache. Debian packages the stack needs are installed by `make deps`.

SHELL := /bin/bash
GO ?= go
IDOPIPE_CACHE ?= $(HOME)/.cache/idopipe
export IDOPIPE_CACHE
# Debian packages: runc runs BuildKit's RUN steps and the node's containers;
# busybox-static is the base image of the test fixture (there is no Docker
# Hub here); containerd, the CNI plugins, iptables and iproute2 make the
# local stack's real kubelet node; uidmap (setuid newuidmap, newgidmap) goes
# into the rootless builder image the stack makes.
DEB_PACKAGES := runc busybox-static containerd containernetworking-plugins iptables iproute2 uidmap
TEST_FLAGS ?= -count=1 -timeout 45m -parallel 4 $(TEST_LDFLAGS)
# Test binaries without DWARF: about 20 % less link CPU each (e2e.test:
# 9.7 CPU-s to link with it, 7.9 without); stack traces keep their file
# and line. TEST_LDFLAGS= keeps DWARF, for a debugger.
TEST_LDFLAGS ?= -ldflags=-w
# Test binaries are kept, one folder per checkout, under the cache: go test
# -o links a package's test binary again only when its code or a
# dependency changed (a link is 6-9 CPU-s for most packages here, ~15 of
# them; measured: pkg/doctor and pkg/commands 16.7 CPU-s the first time,
# 3.8 when kept). Package names must stay unique for that (NAME.test).
# The folder's hash is testenv.BuildCache's (the first 6 bytes of the
# checkout path's sha256), so the e2e package's idopipe lands beside.
TEST_BIN ?= $(IDOPIPE_CACHE)/build/$(shell printf %s '$(CURDIR)' | sha256sum | cut -c1-12)/test
# Static, pure-Go binaries everywhere (the release binaries already are):
# with cgo, kustomize's import of Go's plugin package makes every test
# binary externally and dynamically linked with all its symbols kept.
# Measured on 2 cores: pkg/cluster's test binary 110 MB and 15 CPU-s to
# link with cgo, 44 MB and 7 CPU-s without; all test binaries 138 CPU-s
# against 97. (The stack's tools keep their own build settings.)
CGO_ENABLED ?= 0
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -s -w -X github.com/idopipe/idopipe/pkg/version.Version=$(VERSION)

.PHONY: all build deps tools test test-unit demo vet lint clean bench dist fuzz

all: build

build:
	CGO_ENABLED=$(CGO_ENABLED) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/idopipe ./cmd/idopipe

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

tools: deps
	@build/tools/build.sh >/dev/null

# The fast tier: every test that needs no local stack (no tools, no root).
# Go's test cache answers for the packages an edit did not touch, so a run
# after a small change takes seconds; TEST_UNIT_FLAGS=-count=1 reruns all.
TEST_UNIT_FLAGS ?=
test-unit:
	@mkdir -p $(TEST_BIN)
	CGO_ENABLED=$(CGO_ENABLED) $(GO) test -short $(TEST_LDFLAGS) -o $(TEST_BIN)/ $(TEST_UNIT_FLAGS) ./...

vet:
	CGO_ENABLED=$(CGO_ENABLED) $(GO) vet ./...

# The workflows under .github must pass actionlint (pinned in build/tools).
lint: tools
	$$(build/tools/build.sh)/actionlint .github/workflows/*.yml docs/examples/*.yml

# vet and actionlint run beside the tests' compile and stack start (on two
# cores they overlap the stack's waits); any of the three failing fails it.
# go vet ./... runs every analyzer, so go test's own subset is off.
# The order go test takes packages in (two at a time, -p = the cores):
# internal/testenv first (its host tests hold the machine's one node, ~35 s
# mostly waiting on two stack starts), the small packages and pkg/sign
# beside it, then pkg/buildkitd and its kube driver (API server only), the
# end-to-end package as soon as the node is free, and pkg/build last: its
# CPU-heavy builds run beside the end-to-end stack's start and serial tests
# (a stopped kubelet, Sigstore down, upstream-sized requests), which mostly
# wait. Measured on 2 cores: 7:08, 770 busy CPU-s and 80 idle core-s
# (m30); 7:59, 819 and 141 in import-path order (m26). Others tried:
# test/e2e first, 8:42 (its stack waited 70 s for the node the host tests
# held, both slots mostly idle); pkg/sign last too, 7:31 and 833 CPU-s
# (m31: the end-to-end tests started 30 s sooner but shared the cores with
# pkg/build and pkg/sign longer); -parallel 5, 8:09 and 875 CPU-s (m29).
# The cores are busy, and more at once costs more. Runs of one tree vary
# by ~60 busy CPU-s.
MODULE := github.com/idopipe/idopipe
TEST_FIRST := internal/testenv
TEST_LAST := pkg/sign pkg/buildkitd pkg/buildkitd/kube test/e2e pkg/build
test: tools
	@bin=$$(build/tools/build.sh); \
	CGO_ENABLED=$(CGO_ENABLED) $(GO) vet ./... > .vet.out 2>&1 & vet=$$!; \
	$$bin/actionlint .github/workflows/*.yml docs/examples/*.yml > .lint.out 2>&1 & lint=$$!; \
	mkdir -p $(TEST_BIN); \
	rest=$$($(GO) list ./... | grep -v -x -E '$(MODULE)/($(subst $(eval) ,|,$(TEST_FIRST) $(TEST_LAST)))'); \
	CGO_ENABLED=$(CGO_ENABLED) IDOPIPE_TOOLS_BIN=$$bin $(GO) test -vet=off -o $(TEST_BIN)/ $(TEST_FLAGS) \
	  $(addprefix ./,$(TEST_FIRST)) $$rest $(addprefix ./,$(TEST_LAST)); rc=$$?; \
	wait $$vet || { echo "go vet failed:"; cat .vet.out; rc=1; }; \
	wait $$lint || { echo "actionlint failed:"; cat .lint.out; rc=1; }; \
	rm -f .vet.out .lint.out; exit $$rc

# Each fuzz target for FUZZTIME (their seed corpora also run in make test).
FUZZTIME ?= 30s
FUZZ_TARGETS := ./pkg/manifest:FuzzDecodeTransform ./pkg/registry:FuzzRepository ./pkg/cluster:FuzzDockerConfigJSON
fuzz:
	for t in $(FUZZ_TARGETS); do \
	  $(GO) test -run XXX -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) $${t%%:*} || exit 1; \
	done

# Static release binaries of idopipe itself, with SHA-256 checksums.
DIST_PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
dist:
	rm -rf dist && mkdir -p dist
	for p in $(DIST_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/idopipe-$$os-$$arch ./cmd/idopipe || exit 1; \
	done
	cd dist && sha256sum idopipe-* > SHA256SUMS

demo: tools build
	CGO_ENABLED=$(CGO_ENABLED) IDOPIPE_TOOLS_BIN=$$(build/tools/build.sh) $(GO) run ./cmd/localstack -- build/demo.sh

# idopipe side by side with crane, skopeo, buildctl and kubectl on a fresh
# local stack; writes build/bench/results/bench.{md,json} (see build/bench).
BENCH_FLAGS ?=
bench: tools build
	build/bench/bench.sh $(BENCH_FLAGS)

clean:
	rm -rf bin dist .idopipe $(TEST_BIN)
