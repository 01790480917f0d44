#!/usr/bin/env python3
"""Build compose.yaml's base images locally, from Debian packages, with no registry.

    .venv/bin/python scripts/compose_images.py      # prints the settings to use them

- ``bashfleet-python-base:local``: python3 and venv, for the Dockerfile's BASE_IMAGE (with
  the host's certificate store, so that pip in the build trusts what the host trusts);
- ``bashfleet-postgres:local``: PostgreSQL with a small entrypoint (POSTGRES_USER,
  POSTGRES_PASSWORD, POSTGRES_DB, as the official image reads them);
- ``bashfleet-redis:local``: Debian's redis-server, run as the redis user in /data.

Each is built once (a present tag is kept); tests/test_deploy.py uses the same functions.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sandbox.image import build_debian_image, image_present  # noqa: E402

PG_ENTRYPOINT = r"""#!/bin/sh
# A minimal stand-in for the official image's entrypoint (POSTGRES_USER/PASSWORD/DB).
set -e
PGDATA=/var/lib/postgresql/data
BIN=$(ls -d /usr/lib/postgresql/*/bin | head -n 1)
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  runuser -u postgres -- "$BIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
  runuser -u postgres -- psql -q -c "CREATE USER \"$POSTGRES_USER\" PASSWORD '$POSTGRES_PASSWORD'"
  runuser -u postgres -- psql -q -c "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\""
  runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" -w stop >/dev/null
fi
exec runuser -u postgres -- "$BIN/postgres" -D "$PGDATA"
"""

# pg_isready on PATH for compose's health check, the entrypoint as the command
POSTGRES_FINISH = """
RUN ln -sf $(ls -d /usr/lib/postgresql/*/bin | head -n 1)/pg_isready /usr/local/bin/pg_isready
CMD ["/usr/local/bin/docker-entrypoint"]
"""

# as the official image: data (the AOF) in /data, owned by the redis user it runs as
REDIS_FINISH = """
RUN mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server", "--dir", "/data"]
"""


def finish(base: str, tag: str, steps: str) -> str:
    """``tag``: ``base`` with a few Dockerfile steps on top (built once)."""
    if not image_present(tag):
        subprocess.run(
            ["docker", "build", "-q", "-t", tag, "-"],
            input=f"FROM {base}\n{steps}".encode(),
            check=True,
            capture_output=True,
            timeout=300,
        )
    return tag


def python_base(tag: str) -> str:
    bundle = Path("/etc/ssl/certs/ca-certificates.crt").read_text()
    return build_debian_image(
        tag,
        ("python3", "python3-venv", "ca-certificates"),
        {"/etc/ssl/certs/ca-certificates.crt": (bundle, 0o644)},
    )


def postgres(tag: str, base: str = "") -> str:
    base = build_debian_image(
        base or f"{tag}-base",
        ("postgresql", "ca-certificates"),
        {"/usr/local/bin/docker-entrypoint": (PG_ENTRYPOINT, 0o755)},
    )
    return finish(base, tag, POSTGRES_FINISH)


def redis(tag: str, base: str = "") -> str:
    base = build_debian_image(base or f"{tag}-base", ("redis-server",))
    return finish(base, tag, REDIS_FINISH)


def main() -> int:
    images = {
        "BASHFLEET_BASE_IMAGE": python_base("bashfleet-python-base:local"),
        "BASHFLEET_POSTGRES_IMAGE": postgres("bashfleet-postgres:local"),
        "BASHFLEET_REDIS_IMAGE": redis("bashfleet-redis:local"),
    }
    print("# add to the environment (or the --env-file) of docker-compose:")
    for name, tag in images.items():
        print(f"{name}={tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
