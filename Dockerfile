# kvstore in a container: build with Debian's toolchain, run on a slim image.
#
#   docker build -t kvstore .
#   docker run --rm -p 127.0.0.1:8080:8080 kvstore      # a single-node cluster
#   docker compose up -d                                # three nodes (docker-compose.yml)
#
# The image runs `kvstore` as the unprivileged user "kvstore"; data lives in
# the volume /var/lib/kvstore/data. Ports: client 8080, Raft 9080 (client
# + 1000), events 10080 (client + 2000), per docs/protocol.md, and HTTP
# metrics and health checks 11080 (client + 3000).

# ---- build stage: the same dependency script as CI and the README ----------
# (--build: only what compiling needs, not the test and container tools)
FROM debian:12-slim AS build
COPY scripts/install-deps.sh /src/scripts/install-deps.sh
RUN /src/scripts/install-deps.sh --build && rm -rf /var/lib/apt/lists/*
COPY . /src
WORKDIR /src
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKV_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" \
 && mkdir -p /out \
 && find /build -type f -perm -u+x \
      \( -name kvstore -o -name kvctl -o -name kvload -o -name kvmon \) \
      -exec cp {} /out/ \; \
 && test -x /out/kvstore

# ---- runtime stage: the binaries and their shared libraries ------------------
FROM debian:12-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libzmq5 libncurses6 libncursesw6 libcpp-httplib0.11 libabsl20220623 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/kvstore \
      --shell /usr/sbin/nologin kvstore \
 && mkdir -p /var/lib/kvstore/data \
 && chown -R kvstore:kvstore /var/lib/kvstore
COPY --from=build /out/ /usr/local/bin/
# Every binary loads here: a shared library missing from the list above
# fails the build, not the first start.
RUN for b in /usr/local/bin/*; do "$b" --help > /dev/null || exit 1; done
USER kvstore
WORKDIR /var/lib/kvstore
VOLUME ["/var/lib/kvstore/data"]
EXPOSE 8080 9080 10080 11080
ENTRYPOINT ["kvstore"]
# A one-node cluster listening on every interface; docker-compose.yml shows
# the flags for a real cluster.
CMD ["--id", "1", "--peers", "1=127.0.0.1:8080", "--listen", "0.0.0.0", "--insecure", \
     "--data-dir", "/var/lib/kvstore/data"]
