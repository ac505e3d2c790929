# syntax=docker/dockerfile:1
#
# The Backstop manager image: a static binary on distroless, run as non-root.
#
#   docker build -t backstop:latest .
#   docker buildx build --platform linux/amd64,linux/arm64 -t <your-registry>/backstop:v0.1.0 --push .
#
# config/manager deploys the image backstop:latest; set yours with
# `kustomize edit set image backstop=...` there or in an overlay.

# The builder runs on the build machine's platform and cross-compiles for
# the target one, which a static Go binary allows.
FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src

# Modules first, in a layer of their own: it is rebuilt only when go.mod or
# go.sum change, not on every source change.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w" -o /out/backstop ./cmd/backstop

# distroless/static has CA certificates (for HTTPS to Prometheus and Git
# remotes), tzdata and /etc/passwd with the nonroot user 65532, and no shell.
FROM gcr.io/distroless/static:nonroot
LABEL org.opencontainers.image.title="backstop" \
      org.opencontainers.image.description="SLO-driven progressive delivery for Kubernetes, with Git revert on rollback"
COPY --from=builder /out/backstop /backstop
# Numeric, so that runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/backstop"]
