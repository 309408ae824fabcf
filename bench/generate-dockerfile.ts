/**
 * A large, realistic Dockerfile: stages with ARG/ENV/LABEL, multi-line RUN with
 * continuations, heredocs, COPY with flags, JSON-form CMD, comments and blank lines.
 */
export function generateDockerfile(targetLines: number): string {
  const lines: string[] = ["# syntax=docker/dockerfile:1", "ARG BASE=debian:12", ""];
  for (let stage = 0; lines.length < targetLines; stage++) {
    lines.push(
      `# stage ${stage}: build component ${stage}`,
      `FROM --platform=$BUILDPLATFORM \${BASE} AS build${stage}`,
      `ARG VERSION=${stage}.0 TARGETARCH`,
      `ENV APP_HOME=/srv/app${stage} \\`,
      `    PATH="/srv/app${stage}/bin:$PATH" \\`,
      `    LANG=C.UTF-8`,
      `WORKDIR \${APP_HOME}`,
      `RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\`,
      `    apt-get update && \\`,
      `    apt-get install -y --no-install-recommends build-essential curl ca-certificates && \\`,
      `    rm -rf /var/lib/apt/lists/*`,
      `COPY --chown=app:app --chmod=0755 src/${stage}/ ./src/`,
      `RUN <<EOF`,
      `set -eux`,
      `make -C src VERSION=\${VERSION} ARCH=\${TARGETARCH}`,
      `strip src/out/app${stage}`,
      `EOF`,
      `LABEL org.opencontainers.image.title="component ${stage}" \\`,
      `      org.opencontainers.image.version=\${VERSION}`,
      `EXPOSE ${8000 + (stage % 1000)}/tcp`,
      `HEALTHCHECK --interval=30s --timeout=3s CMD ["/srv/bin/health", "--quiet"]`,
      `CMD ["/srv/app/bin/app${stage}", "--listen", ":8080"]`,
      "",
    );
  }
  return lines.slice(0, targetLines).join("\n").replace(/\nEOF$|\n[^\n]*\\$/, "") + "\n";
}
