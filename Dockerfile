# syntax=docker/dockerfile:1
#
# crabbox-runner as a container image: a static binary on distroless, running
# as a non-root user, `serve` by default.
#
#   docker build --build-arg VERSION=v1.2.3 -t crabbox-runner .
#   docker run -p 8080:8080 -v crabbox-data:/data \
#     -v "$PWD/crabbox-runner.yaml:/etc/crabbox-runner/crabbox-runner.yaml:ro" \
#     -e CRABBOX_CONFIG=/etc/crabbox-runner/crabbox-runner.yaml \
#     -v "$PWD/secrets:/run/secrets:ro" \
#     -e CRABBOX_WEBHOOK_SECRET_FILE=/run/secrets/webhook-secret \
#     -e VAST_API_KEY_FILE=/run/secrets/vast-api-key crabbox-runner
#
# The state key the lease SSH keys come from is made at first start beside
# the database on the /data volume (crabbox-runner.db.state-key, 0600), or
# given by -e CRABBOX_STATE_KEY_FILE=/run/secrets/state-key.
#
# Health: GET /healthz (liveness: the process answers) and GET /readyz
# (readiness: the database answers) on port 8080. The image has no shell and
# no curl, so it declares no HEALTHCHECK: probe over HTTP from outside
# (Kubernetes httpGet probes, a load balancer's health check); see
# docs/operations.md and examples/kubernetes/.
#
# The release workflow (.github/workflows/release.yml) builds it for
# linux/amd64 and linux/arm64. The builder runs on the build machine's own
# platform and cross-compiles (no emulation); the final stage has no RUN.
# cmd/crabbox-runner/dockerfile_test.go builds the binary with exactly the
# flags below and checks that it is static.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
# The release tag (v1.2.3); `crabbox-runner version` prints it.
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=$VERSION" \
      -o /out/crabbox-runner ./cmd/crabbox-runner
# The data directory, owned by the image's user so that a new named volume
# mounted on /data is writable by it (distroless has no shell to do this).
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
# distroless/static brings CA certificates (for GitHub, Vast and Lambda over
# https), tzdata and /etc/passwd with the user nonroot (65532).
COPY --from=build /out/crabbox-runner /usr/local/bin/crabbox-runner
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
# The default SQLite database lives on the volume. For several replicas set
# CRABBOX_DATABASE_URL to postgres://… instead (docs/operations.md).
ENV CRABBOX_DATABASE_URL=sqlite:/data/crabbox-runner.db
VOLUME ["/data"]
# POST /webhook, GET /healthz, GET /readyz, GET /metrics (CRABBOX_LISTEN, default :8080).
# On :8080 (every interface) the status page and /metrics answer 403 unless
# CRABBOX_STATUS_TOKEN(_FILE) is set; CRABBOX_METRICS_LISTEN adds a port for
# /metrics alone, without the token (docs/metrics.md#scraping).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/crabbox-runner"]
CMD ["serve"]
