# cellgate: built on Debian 12 with the same install script CI uses, run on a small image with
# the kernels' Python (ipykernel, numpy, pandas, matplotlib from Debian).
#
#   docker build -t cellgate .
#   docker run -d --name cellgate -p 50051:50051 \
#     -v "$PWD/token:/run/secrets/cellgate_token:ro" -v cellgate-state:/var/lib/cellgate cellgate
#
# deploy/README.md says which `docker run` options the sandbox layers need and what each one
# missing costs.

FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh --no-tests && rm -rf /var/lib/apt/lists/*
COPY . .
RUN BUILD_DIR=/build scripts/build.sh -DCELLGATE_BUILD_TESTS=OFF \
 && cmake --install /build --prefix /opt/cellgate

FROM debian:bookworm
COPY scripts/install-deps.sh /usr/local/lib/cellgate/install-deps.sh
# tini as PID 1 reaps whatever a kernel leaves behind and forwards SIGTERM to the gateway.
RUN /usr/local/lib/cellgate/install-deps.sh --runtime-only \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/cellgate /opt/cellgate
ENV PATH=/opt/cellgate/bin:$PATH
EXPOSE 50051 9464
VOLUME /var/lib/cellgate
# Runs as root inside the container so each kernel gets its own unprivileged uid.
ENTRYPOINT ["/usr/bin/tini", "--", "cellgate", "--state-dir=/var/lib/cellgate", \
            "--runtime-dir=/run/cellgate", "--metrics-listen=0.0.0.0:9464"]
# Reachable from other containers, so clients must authenticate: mount a token file there (or
# replace these arguments, e.g. with --listen=unix:/sock/cellgate.sock for a shared volume).
CMD ["--listen=0.0.0.0:50051", "--auth-token-file=/run/secrets/cellgate_token"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["cellgate-health", "--target=127.0.0.1:50051"]
