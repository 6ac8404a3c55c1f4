# tls-tunnel on the official Deno image: the single-file bundle, run as the image's non-root `deno` user
# with the permissions of `deno task server` / `deno task client`, plus writing to the state directory
# (where a server without a config file keeps its generated certificate and keys).
#
#   docker build -t tls-tunnel .                      # the server image (the last stage)
#   docker build -t tls-tunnel-client --target client .
#   docker run -v ./server.toml:/etc/tls-tunnel/server.toml:ro -p 8443:8443 tls-tunnel
#   docker run -v ./client.toml:/etc/tls-tunnel/client.toml:ro tls-tunnel-client
#
# Configs are read from /etc/tls-tunnel/server.toml and /etc/tls-tunnel/client.toml (mount them
# read-only); relative paths in them (cert_path, key_path, ca_cert_path) resolve from /etc/tls-tunnel.
# /var/lib/tls-tunnel is the state directory ($XDG_STATE_HOME/tls-tunnel), a volume the `deno` user owns.
# Either image runs any command: `docker run tls-tunnel check -c /etc/tls-tunnel/server.toml`.
# Not built where this was written (no Docker daemon there); tests/workflows_test.ts checks it.

# The Deno version is .ci/run's pin.
ARG DENO_VERSION=2.9.6

FROM denoland/deno:${DENO_VERSION} AS build
WORKDIR /src
COPY deno.json deno.lock main.ts ./
COPY lib ./lib
# The arguments of `deno task bundle` (scripts/compile_all.ts bundleArgs).
RUN deno bundle --platform deno --minify -o /tls-tunnel.js main.ts

FROM denoland/deno:${DENO_VERSION} AS runtime
LABEL org.opencontainers.image.title="tls-tunnel" \
      org.opencontainers.image.description="A TLS reverse tunnel: publish services behind NAT on a public server's ports"
COPY --from=build /tls-tunnel.js /app/tls-tunnel.js
RUN mkdir -p /etc/tls-tunnel /var/lib/tls-tunnel \
 && chown deno:deno /var/lib/tls-tunnel \
 && chmod 0700 /var/lib/tls-tunnel
ENV XDG_STATE_HOME=/var/lib \
    DENO_NO_UPDATE_CHECK=1
VOLUME ["/var/lib/tls-tunnel"]
WORKDIR /etc/tls-tunnel
USER deno
ENTRYPOINT ["deno", "run", "--no-config", "--no-prompt", "--allow-net", "--allow-read", "--allow-env", "--allow-sys=hostname", "--allow-ffi", "--allow-write=/var/lib/tls-tunnel", "/app/tls-tunnel.js"]

FROM runtime AS client
CMD ["client", "-c", "/etc/tls-tunnel/client.toml"]

FROM runtime AS server
EXPOSE 8443
CMD ["server", "-c", "/etc/tls-tunnel/server.toml"]
