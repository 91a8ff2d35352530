# syntax=docker/dockerfile:1
#
# maas-mirror in a container.
#
#   docker build -t maas-mirror .
#   install -d -o 10101 -g 10101 /srv/maas-mirror/data
#   docker run -d --name maas-mirror --network host \
#     -v /srv/maas-mirror/etc:/etc/maas-mirror:ro \
#     -v /srv/maas-mirror/data:/var/lib/maas-mirror \
#     -e MAAS_MIRROR_API_TOKEN=... maas-mirror
#
# The data volume must be writable by uid/gid 10101 (the image's maas-mirror
# user, pinned so a bind mount's owner can be set before the first start).
# The configuration is optional: without a mount on /etc/maas-mirror the
# image's default (below) is used; /etc/maas-mirror is deliberately not a
# VOLUME, so no anonymous volume shadows a later edit of the image.
#
# Host networking is what TFTP wants: each transfer answers from a new port,
# which Docker's port mapping (-p 69:69/udp) does not follow without the
# conntrack TFTP helper. With -p, HTTP alone works fine: -p 8080:8080.
# Reload the configuration with `docker kill -s HUP maas-mirror`.
#
# The Node version, in this one place: the image runs Node 26, the active LTS
# line (since October 2026; slim is Debian trixie). package.json's engines
# names Node 20, the line the test suite runs on, which is end of life and
# gets no new images: npm's engine check only warns, and the build below
# compiles and starts the CLI on 26.
ARG NODE_IMAGE=node:26-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# tsc -p tsconfig.build.json → dist/; then drop the dev dependencies.
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
# tini: PID 1 that forwards SIGTERM/SIGHUP and reaps children.
# xz-utils: bootloader archives are unpacked by `xz` in a child process (and `maas-mirror demo` builds its samples with tar -J).
# libcap2-bin only to give node the right to bind port 69 (TFTP) as a non-root
# user, with host networking too, then removed. A binary with file capabilities
# runs in secure-execution mode, where node ignores NODE_OPTIONS (and
# NODE_EXTRA_CA_CERTS): give node flags in the ENTRYPOINT instead.
# gpgv is not needed: signatures are checked in-process.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini xz-utils libcap2-bin \
 && setcap cap_net_bind_service=+ep "$(readlink -f /usr/local/bin/node)" \
 && apt-get purge -y libcap2-bin \
 && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10101 maas-mirror \
 && useradd --system --uid 10101 --gid maas-mirror --home-dir /var/lib/maas-mirror --no-create-home --shell /usr/sbin/nologin maas-mirror \
 && mkdir -p /etc/maas-mirror /var/lib/maas-mirror \
 && chown maas-mirror:maas-mirror /var/lib/maas-mirror

WORKDIR /opt/maas-mirror
COPY --from=build /src/package.json /src/package-lock.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY bin ./bin
COPY README.md ./
COPY config ./config
# The sample metadata `demo` builds its upstream from.
COPY test/fixtures ./test/fixtures

# The default configuration, with the container's paths. A bind mount on
# /etc/maas-mirror brings its own (and needs only be readable by uid 10101).
RUN sed -e 's#^dataDir: .*#dataDir: /var/lib/maas-mirror#' \
        -e 's#keyring: keyrings/#keyring: /opt/maas-mirror/config/keyrings/#' \
        config/maas-mirror.yaml > /etc/maas-mirror/maas-mirror.yaml

ENV NODE_ENV=production \
    MAAS_MIRROR_CONFIG=/etc/maas-mirror/maas-mirror.yaml

USER maas-mirror
VOLUME ["/var/lib/maas-mirror"]
EXPOSE 8080 69/udp

# Ready = a snapshot is published and the data volume is writable. The first
# sync of a fresh volume can take long: the start period covers it. (Under an
# orchestrator that replaces unhealthy containers, point this at /livez
# instead: add --url http://127.0.0.1:PORT/livez, or the first sync never gets
# to finish.) The probe reads the configuration, so it follows http.listen.
HEALTHCHECK --interval=30s --timeout=5s --start-period=1h --retries=3 \
  CMD ["node", "/opt/maas-mirror/bin/maas-mirror.js", "healthcheck"]

ENTRYPOINT ["/usr/bin/tini", "--", "node", "/opt/maas-mirror/bin/maas-mirror.js"]
CMD ["serve"]
