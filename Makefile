# Backstop. `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

BIN := $(CURDIR)/bin
# Control plane versions for the tests (see hack/tools/*/go.mod).
KUBE_VERSION := v1.37.2
KUBE_LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37

CONTROLLER_GEN := $(BIN)/controller-gen
TEST_BINARIES := $(BIN)/etcd $(BIN)/kube-apiserver $(BIN)/kubectl
GO_TEST_FLAGS ?= -count=1 -timeout 30m

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN{FS=":.*##"} /^[a-z0-9-]+:.*##/{printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code, CRDs and RBAC from the markers.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=backstop-manager paths=./controllers/... output:rbac:artifacts:config=config/rbac

.PHONY: docs
docs: ## Generate the API reference (docs/reference/v1alpha1.md) from the CRDs.
	go run ./hack/crdref -out docs/reference/v1alpha1.md

.PHONY: verify
verify: generate docs fmt vet ## Fail when generated files are stale or code is unformatted.
	@if [ -n "$$(git status --porcelain -- api config docs/reference)" ]; then \
		echo "Generated files are stale; run 'make generate docs' and commit:"; git status --porcelain -- api config docs/reference; \
		git --no-pager diff --stat -- api config docs/reference; exit 1; fi
	@echo "Generated files are up to date."

.PHONY: fmt
fmt: ## Fail when a Go file is not gofmt'ed.
	@files=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$files" ]; then echo "Not gofmt'ed:"; echo "$$files"; exit 1; fi

.PHONY: vet
vet: ## Run go vet (also on the code behind the chaos and e2e build tags).
	go vet ./...
	go vet -tags chaos,e2e ./test/...

.PHONY: lint
lint: fmt vet ## Run the linters (gofmt, go vet).

.PHONY: build
build: ## Build the manager into bin/backstop.
	CGO_ENABLED=0 go build -o $(BIN)/backstop ./cmd/backstop

##@ Tests

.PHONY: test
test: $(TEST_BINARIES) test-argocd-health test-benchplot ## Run the tests against a real kube-apiserver and etcd.
	BACKSTOP_TEST_ASSETS=$(BIN) go test $(GO_TEST_FLAGS) ./...

.PHONY: plugin
plugin: ## Build the kubectl plugin into bin/kubectl-backstop; with bin/ on the PATH, `kubectl backstop` runs it.
	CGO_ENABLED=0 go build -o $(BIN)/kubectl-backstop ./cmd/kubectl-backstop

.PHONY: test-argocd-health
test-argocd-health: ## Run the Argo CD health check of a Rollout in Argo CD's Lua interpreter.
	cd hack/argocd-health && go test ./...

.PHONY: bench-revert
bench-revert: ## Time a Git revert in repositories of 1,000, 10,000 and 50,000 commits against the git CLI, with peak memory (about a minute).
	bash -o pipefail -c "go test ./test/bench/revert -run '^\$$' -bench . -benchtime=1x -timeout 30m | tee bench-revert.out"

.PHONY: bench-reaction
bench-reaction: stack-tools ## Measure the reaction to a faulty release on the local stack (20 rounds, about 8 minutes); needs root.
	@command -v prometheus >/dev/null || { echo ">> Installing prometheus (Debian package) for the benchmark"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }
	@command -v ip >/dev/null || { echo ">> Installing ip (Debian package iproute2) for the benchmark"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iproute2; }
	bash -o pipefail -c "go run ./test/bench/reaction $(BENCH_REACTION_FLAGS) | tee bench-reaction.out"

.PHONY: bench-scale
bench-scale: $(TEST_BINARIES) $(BIN)/kube-controller-manager $(BIN)/kwok ## Measure the manager with 100, 1,000 and 10,000 Rollouts on kwok nodes, a tenth releasing at once (about an hour).
	@command -v prometheus >/dev/null || { echo ">> Installing prometheus (Debian package) for the benchmark"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }
	bash -o pipefail -c "go run ./test/bench/scale $(BENCH_SCALE_FLAGS) | tee bench-scale.out"

.PHONY: bench
bench: bench-revert bench-reaction bench-scale ## Run every benchmark (about 75 minutes; the reaction benchmark needs root).

.PHONY: bench-plot
bench-plot: ## Draw the BENCH lines of bench-*.out as PNGs in docs/benchmarks/.
	@files="$(wildcard bench-*.out)"; [ -n "$$files" ] || { echo "No bench-*.out: run a benchmark first (make bench-revert)"; exit 1; }
	cd hack/benchplot && go run . -out ../../docs/benchmarks $(addprefix ../../,$(wildcard bench-*.out))

.PHONY: test-benchplot
test-benchplot: ## Test the benchmark plotter (its own module).
	cd hack/benchplot && go test ./...

.PHONY: e2e
e2e: stack-tools ## Run the end-to-end tests on the local stack (needs root, for network namespaces).
	BACKSTOP_TEST_ASSETS=$(BIN) go test -tags e2e -count=1 -timeout 20m ./test/stack/... ./test/fluxsource/...

# Each fuzz target with its package: go test -fuzz runs one target of one
# package at a time. make test replays their corpora (testdata/fuzz).
FUZZ_TARGETS := FuzzRender:./analysis FuzzRenderTemplate:./analysis FuzzMerge3:./revert FuzzPlan:./controllers/plan FuzzRolloutSpec:./controllers
FUZZTIME ?= 20s

.PHONY: fuzz
fuzz: $(TEST_BINARIES) ## Fuzz the query templates, the three-way merge, the plans and Rollout specs for FUZZTIME (20s) each: about 2 minutes.
	@for t in $(FUZZ_TARGETS); do \
		echo ">> $${t%%:*} in $${t#*:} for $(FUZZTIME)"; \
		BACKSTOP_TEST_ASSETS=$(BIN) go test -run '^$$' -fuzz "^$${t%%:*}\$$" -fuzztime $(FUZZTIME) "$${t#*:}" || exit 1; \
	done

.PHONY: chaos
chaos: $(TEST_BINARIES) ## Kill the manager with SIGKILL at random moments during 100 releases and check that nothing shows (about 3 minutes).
	@command -v prometheus >/dev/null || { echo ">> Installing prometheus (Debian package) for the chaos test"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }
	BACKSTOP_TEST_ASSETS=$(BIN) go test -tags chaos -count=1 -v -timeout 20m ./test/chaos/...

.PHONY: tools
tools: $(TEST_BINARIES) $(CONTROLLER_GEN) ## Build the test control plane and controller-gen.

.PHONY: demo
demo: stack-tools ## Play two releases (one good, one faulty) on the local stack; needs root.
	@command -v prometheus >/dev/null || { echo ">> Installing prometheus (Debian package) for the demo"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }
	@command -v ip >/dev/null || { echo ">> Installing ip (Debian package iproute2) for the demo"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iproute2; }
	go run ./test/demo

# The control plane and code generator are built from their Go modules into
# bin/ on first use; later runs reuse them. A version bump in hack/tools
# rebuilds them.

$(BIN)/etcd: hack/tools/etcd/go.mod hack/tools/etcd/main.go
	@echo ">> Building etcd v3.6.8 into bin/ for the test control plane (first run only; about a minute)."
	cd hack/tools/etcd && CGO_ENABLED=0 go build -ldflags "-s -w" -o $@ .

$(BIN)/kube-apiserver: hack/tools/kube/go.mod
	@echo ">> Building kube-apiserver $(KUBE_VERSION) into bin/ for the test control plane (first run only; several minutes)."
	cd hack/tools/kube && CGO_ENABLED=0 go build -ldflags "$(KUBE_LDFLAGS)" -o $@ k8s.io/kubernetes/cmd/kube-apiserver

$(BIN)/kube-controller-manager: hack/tools/kube/go.mod
	@echo ">> Building kube-controller-manager $(KUBE_VERSION) into bin/ (first run only; several minutes)."
	cd hack/tools/kube && CGO_ENABLED=0 go build -ldflags "$(KUBE_LDFLAGS)" -o $@ k8s.io/kubernetes/cmd/kube-controller-manager

$(BIN)/kubectl: hack/tools/kube/go.mod
	@echo ">> Building kubectl $(KUBE_VERSION) into bin/ to test the manifests and printer columns (first run only)."
	cd hack/tools/kube && CGO_ENABLED=0 go build -ldflags "$(KUBE_LDFLAGS)" -o $@ k8s.io/kubernetes/cmd/kubectl

$(CONTROLLER_GEN): hack/tools/controller-gen/go.mod
	@echo ">> Building controller-gen into bin/ (first run only)."
	cd hack/tools/controller-gen && go build -o $@ sigs.k8s.io/controller-tools/cmd/controller-gen

# The end-to-end stack's third-party controllers are built the same way, each
# from its own module under hack/tools. Times are for a 2-core machine.

TRAEFIK_LDFLAGS := -s -w -X github.com/traefik/traefik/v3/pkg/version.Version=3.6.12 \
	-X github.com/traefik/traefik/v3/pkg/version.Codename=ramequin

.PHONY: stack-tools
stack-tools: $(TEST_BINARIES) $(BIN)/kube-controller-manager $(BIN)/kwok $(BIN)/traefik $(BIN)/kustomize-controller ## Build the end-to-end stack's binaries.

$(BIN)/kwok: hack/tools/kwok/go.mod
	@echo ">> Building kwok v0.8.0 into bin/ for the end-to-end stack (first run only; about four minutes)."
	cd hack/tools/kwok && CGO_ENABLED=0 go build -ldflags "-s -w" -o $@ sigs.k8s.io/kwok/cmd/kwok

$(BIN)/traefik: hack/tools/traefik/go.mod
	@echo ">> Building traefik v3.6.12 into bin/ for the end-to-end stack (first run only; about a quarter of an hour)."
	cd hack/tools/traefik && CGO_ENABLED=0 go build -ldflags "$(TRAEFIK_LDFLAGS)" -o $@ github.com/traefik/traefik/v3/cmd/traefik

# source-controller is not built: a module it needs
# (github.com/fluxcd/pkg/artifact) cannot be downloaded here, so the stack
# runs test/fluxsource in its place.
$(BIN)/kustomize-controller: hack/tools/flux-kustomize/go.mod
	@echo ">> Building kustomize-controller v1.9.6 into bin/ for the end-to-end stack (first run only; about four minutes)."
	cd hack/tools/flux-kustomize && CGO_ENABLED=0 go build -ldflags "-s -w" -o $@ github.com/fluxcd/kustomize-controller
