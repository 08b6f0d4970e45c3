# Dockerfile — owns the container image of Sluice: a build stage that compiles build/sluice
# with Debian 12's -dev packages, and a slim runtime stage with only the shared libraries it
# links against, running as the unprivileged user `sluice`.
#
# Why two stages: the compiler and headers are ~400 MB that a running gateway never needs.
# The runtime packages are the Debian 12 names of the libraries the Makefile links
# (libmicrohttpd, libwebsockets, jansson, hiredis, libpq, PCRE2, OpenSSL).
#
#   docker build -t sluice .
#   docker run -e SLUICE_DATABASE_URL=... -e SLUICE_REDIS_URL=... -p 8080:8080 -p 8081:8081 sluice
#
# The container listens on 0.0.0.0 (SLUICE_BIND); `sluice` migrates the database, then serves.
# docker-compose.yml runs two instances against one PostgreSQL and one Redis.

FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config \
      libmicrohttpd-dev libwebsockets-dev libjansson-dev libhiredis-dev libpq-dev \
      libpcre2-dev libssl-dev libcurl4-openssl-dev libjemalloc-dev python3-yaml \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make -j"$(nproc)"

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libmicrohttpd12 libwebsockets17 libjansson4 libhiredis0.14 libpq5 libpcre2-8-0 libssl3 libcurl4 libjemalloc2 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /opt/sluice --no-create-home \
      --shell /usr/sbin/nologin sluice
COPY --from=build /src/build/sluice /opt/sluice/sluice
COPY --from=build /src/schemas /opt/sluice/schemas
COPY --from=build /src/web /opt/sluice/web
COPY --from=build /src/openapi /opt/sluice/openapi
WORKDIR /opt/sluice
USER sluice
ENV SLUICE_BIND=0.0.0.0
EXPOSE 8080 8081
ENTRYPOINT ["/opt/sluice/sluice"]
