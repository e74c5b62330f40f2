# fwdmux sidecar image: the static binary, CA certificates and a non-root user, nothing
# else (no shell). Build with `make image`, which prepares what is copied here:
#   bin/fwdmux         CGO_ENABLED=0 static binary (make build)
#   bin/rootfs/etc/    passwd and group with the fwdmux user (65532), ssl/certs/ca-certificates.crt
#   bin/rootfs/var/lib/fwdmux/  the state directory
#
# Configuration is by environment (see DESIGN.md, "Command-line contract"):
#   FWDMUX_LISTEN      forward listener; 0.0.0.0 so other containers reach it.
#   FWDMUX_ADMIN       admin API; loopback by default, so only `fwdmux healthcheck`
#                      inside the container reaches it. To expose it, set
#                      FWDMUX_ADMIN=0.0.0.0:24223 together with FWDMUX_ADMIN_TOKEN
#                      (mutating requests then need "Authorization: Bearer <token>");
#                      fwdmux refuses a non-loopback admin address without a token.
#   FWDMUX_SERVERS     upstreams, comma-separated host:port (none: events go to stdout).
#   FWDMUX_LOGS        tail targets, comma-separated TAG=PATH (mount the log volume).
#   FWDMUX_STATE_DIR   positions and runtime changes; mount a volume to keep them.
# A config file works too: mount it and pass `-c /etc/fwdmux/fwdmux.toml`.
FROM scratch

COPY bin/rootfs/etc/ /etc/
COPY --chown=65532:65532 bin/rootfs/var/lib/fwdmux/ /var/lib/fwdmux/
COPY bin/fwdmux /fwdmux

ENV FWDMUX_LISTEN=0.0.0.0:24224 \
    FWDMUX_ADMIN=127.0.0.1:24223 \
    FWDMUX_STATE_DIR=/var/lib/fwdmux \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

USER 65532:65532
WORKDIR /var/lib/fwdmux
VOLUME /var/lib/fwdmux

EXPOSE 24224 24224/udp 24223

# Asks the running process's /ready (FWDMUX_ADMIN): exit 0 when it can take events.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/fwdmux", "healthcheck"]

# SIGTERM drains the ring to the upstreams (drain_timeout, 30s) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/fwdmux"]
