# cellgate: build on Debian 12 with the same install script CI uses, run on a small image.
FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN BUILD_DIR=/build scripts/build.sh -DCELLGATE_BUILD_TESTS=OFF \
 && cmake --install /build --prefix /opt/cellgate

FROM debian:bookworm
COPY scripts/install-deps.sh /usr/local/lib/cellgate/install-deps.sh
RUN /usr/local/lib/cellgate/install-deps.sh --runtime-only \
 && apt-get install -y --no-install-recommends libgrpc++1.51 libprotobuf32 libzmq5 \
      libabsl20220623 libssl3 libsimdjson14 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/cellgate /opt/cellgate
ENV PATH=/opt/cellgate/bin:$PATH
EXPOSE 50051
VOLUME /var/lib/cellgate
ENTRYPOINT ["cellgate", "--listen=0.0.0.0:50051", "--state-dir=/var/lib/cellgate", \
            "--runtime-dir=/run/cellgate"]
