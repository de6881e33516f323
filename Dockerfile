# The nimbus image: the CLI and the reconcile daemon (docs/install.md, "Container image").
#
#   docker build -t nimbus .                       # compiles nimbus in a Rust image
#   docker run -d -p 7070:7070 -v nimbus-state:/var/lib/nimbus \
#     -e NIMBUS_REPO=https://git.example.com/infra.git nimbus
#
# With a nimbus binary already built (CI, or a machine with no registry), put it at
# prebuilt/nimbus in the build context and the build stage only copies it; RUST_IMAGE and
# BASE_IMAGE name other images to build from (the tests use a Debian slim image made here).
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# Marks this stage's image (the legacy builder keeps it) so a build can remove its own.
ARG BUILD_ID=
LABEL nimbus.build=${BUILD_ID}
WORKDIR /src
COPY . .
RUN if [ -x prebuilt/nimbus ]; then \
        install -D -m 0755 prebuilt/nimbus /out/nimbus; \
    else \
        cargo build --locked --profile dist -p nimbus --bin nimbus \
        && install -D -m 0755 target/dist/nimbus /out/nimbus; \
    fi

FROM ${BASE_IMAGE}
# ca-certificates: TLS to git servers, forges and PostgreSQL (the system's roots are read);
# openssh-client: ssh:// config repositories. Installed only if the base lacks them.
RUN if [ ! -e /etc/ssl/certs/ca-certificates.crt ] || ! command -v ssh >/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
           ca-certificates openssh-client \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/nimbus \
       --shell /usr/sbin/nologin nimbus \
    && install -d -m 0700 -o nimbus -g nimbus /var/lib/nimbus
COPY --from=build /out/nimbus /usr/local/bin/nimbus
# nimbus reaches hosts over SSH and needs no privilege here: it runs as its own user, and
# what it keeps (state, the repository's mirror, the notification outbox) is in the volume.
USER 10001:10001
WORKDIR /var/lib/nimbus
VOLUME /var/lib/nimbus
ENV NIMBUS_LISTEN=0.0.0.0:7070 \
    NIMBUS_WORKDIR=/var/lib/nimbus
EXPOSE 7070
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["nimbus", "healthcheck"]
# SIGTERM: the changes under way finish and are recorded, then the daemon exits; give it time
# (docker stop -t 300, or stop_grace_period in compose).
STOPSIGNAL SIGTERM
ENTRYPOINT ["nimbus"]
CMD ["reconcile"]
