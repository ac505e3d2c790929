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

.PHONY: verify
verify: generate fmt vet ## Fail when generated files are stale or code is unformatted.
	@if [ -n "$$(git status --porcelain -- api config)" ]; then \
		echo "Generated files are stale; run 'make generate' and commit:"; git status --porcelain -- api config; \
		git --no-pager diff --stat -- api config; exit 1; fi
	@echo "Generated files are up to date."

.PHONY: fmt
fmt: ## Fail when a Go file is not gofmt'ed.
	@files=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$files" ]; then echo "Not gofmt'ed:"; echo "$$files"; exit 1; fi

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: fmt vet ## Run the linters (gofmt, go vet).

.PHONY: build
build: ## Build the manager into bin/backstop.
	CGO_ENABLED=0 go build -o $(BIN)/backstop ./cmd/backstop

##@ Tests

.PHONY: test
test: $(TEST_BINARIES) ## Run the tests against a real kube-apiserver and etcd.
	BACKSTOP_TEST_ASSETS=$(BIN) go test $(GO_TEST_FLAGS) ./...

.PHONY: bench-revert
bench-revert: ## Time a Git revert in a repository of 50,000 commits against the git CLI (about a minute).
	go test ./test/bench/revert -run '^$$' -bench . -benchtime=1x -timeout 30m

.PHONY: tools
tools: $(TEST_BINARIES) $(CONTROLLER_GEN) ## Build the test control plane and controller-gen.

.PHONY: demo
demo: ## Run the whole loop on a local stack.
	@echo "make demo: the local stack (kube-apiserver, kube-controller-manager, kwok, traefik,"
	@echo "Prometheus, a git server and Flux) arrives with the end-to-end work; until then"
	@echo "'make test' exercises the API and the controller against a real kube-apiserver."

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
