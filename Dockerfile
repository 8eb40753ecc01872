# syntax=docker/dockerfile:1
# infrawatch as a container: `docker build -t infrawatch .`, then see docs/operations.md.

# -- build: resolve and install into a virtualenv, pinned by constraints.txt ------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# A C compiler for setup.py, which compiles the detectors with mypyc (the runtime stage gets the
# compiled modules, not the compiler).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml setup.py constraints.txt README.md ./
COPY infrawatch ./infrawatch
RUN /opt/venv/bin/pip install -c constraints.txt .

# -- runtime: the virtualenv only, as an unprivileged user ------------------------------------
FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 infrawatch \
    && useradd --system --uid 10001 --gid infrawatch --home-dir /var/lib/infrawatch \
       --shell /usr/sbin/nologin infrawatch \
    && mkdir -p /var/lib/infrawatch /etc/infrawatch \
    && chown infrawatch:infrawatch /var/lib/infrawatch
COPY --from=build /opt/venv /opt/venv
# Configuration: INFRAWATCH_* variables, or a TOML file mounted at
# /etc/infrawatch/infrawatch.toml (read automatically when present). The database goes to
# $STATE_DIRECTORY (the volume) unless storage.path says otherwise. The INFRAWATCH_*
# variables below are environment, so they win over a mounted file: change them with -e.
# The container's own interfaces are all 0.0.0.0 reaches: who gets to the port is decided by
# `docker run -p` or the pod's network, so the image says so explicitly instead of refusing
# to start. http.basic_auth_users in a mounted file turns passwords on whatever this says
# (docs/operations.md, "Exposing the server").
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STATE_DIRECTORY=/var/lib/infrawatch \
    INFRAWATCH_HTTP__LISTEN=0.0.0.0:9464 \
    INFRAWATCH_HTTP__ALLOW_UNAUTHENTICATED=true \
    INFRAWATCH_LOGGING__FORMAT=json
VOLUME ["/var/lib/infrawatch"]
EXPOSE 9464
USER 10001:10001
WORKDIR /var/lib/infrawatch
# /healthz answers 503 when a producer stalls; a blocked event loop makes the request time out.
# No proxy: HTTP_PROXY in the container's environment must not send the probe elsewhere.
# If you change the listen port, change it here too.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:9464/healthz', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "infrawatch", "run"]
