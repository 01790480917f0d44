# bashfleet portal. Multi-stage: build a virtual environment, then copy it into a
# clean runtime image that runs as a non-root user.
#   docker build -t bashfleet .                       (needs a registry for python:3.11-slim)
#   docker build --build-arg BASE_IMAGE=my/python:3.11 -t bashfleet .   (any Debian-like
#   image with python3 and the venv module, e.g. one built locally without a registry)
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# pip trusts the system's certificate store (which a TLS-inspecting proxy's CA may be added to)
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY sandbox ./sandbox
COPY webapp ./webapp
COPY bashfleet ./bashfleet
# the versions the tests ran with (requirements.lock, as pip constraints)
RUN python3 -m venv /opt/bashfleet \
 && /opt/bashfleet/bin/pip install --no-cache-dir --disable-pip-version-check \
      -c requirements.lock . \
 && find /opt/bashfleet -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/bashfleet bashfleet \
 && mkdir -p /data && chown bashfleet:bashfleet /data
COPY --from=build /opt/bashfleet /opt/bashfleet
ENV PATH=/opt/bashfleet/bin:$PATH \
    BASHFLEET_DATA=/data \
    PYTHONDONTWRITEBYTECODE=1
USER bashfleet
WORKDIR /home/bashfleet
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=6 \
  CMD python3 -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
CMD ["bashfleet", "serve", "--host", "0.0.0.0", "--port", "8080"]
