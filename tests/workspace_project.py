"""A small C + Python project, the batch that builds and tests it in a ``dev`` workspace, and
the same build in a throwaway container: reusable by engine- and portal-level tests.

    write_project(root)                 the files (owned by ``owner``)
    project_tarball()                   the same files as a .tar.gz (bytes), for an upload
    DEV_SCRIPT                          make; python3 -m unittest; git init/add/commit; echo $SECRET
    dev_environment(secret)             a WorkspaceEnvironment on the dev image with the secret
    reference_binary(client, image)     ``make`` of the same files in a fresh container: the
                                        binary a workspace's build must equal, byte for byte
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from sandbox.image import DEV_IMAGE, SANDBOX_UID
from sandbox.workspace_env import Network, WorkspaceEnvironment

FILES = {
    "Makefile": "hello: hello.c\n\tgcc -O2 -o hello hello.c\n",
    "hello.c": '#include <stdio.h>\nint main(void) { puts("hello from C"); return 0; }\n',
    "calc.py": "def add(a, b):\n    return a + b\n",
    "test_calc.py": (
        "import unittest\n\nfrom calc import add\n\n\n"
        "class T(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n"
    ),
}

# set -e: in script order, one after the other, as bash would
DEV_SCRIPT = (
    "set -e\nmake\npython3 -m unittest -v\n"
    "git init -q && git add Makefile hello.c calc.py test_calc.py && "
    "git commit -q -m first && git log --format=%an\n"
    "./hello\n"
    'echo "secret=$SECRET"\n'
)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bash Fleet",
    "GIT_AUTHOR_EMAIL": "fleet@example.invalid",
    "GIT_COMMITTER_NAME": "Bash Fleet",
    "GIT_COMMITTER_EMAIL": "fleet@example.invalid",
}


def write_project(root: Path, owner: int = SANDBOX_UID) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in FILES.items():
        (root / name).write_text(text)
    if os.geteuid() == 0:
        for p in [root, *root.iterdir()]:
            os.chown(p, owner, owner)


def project_tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in sorted(FILES.items()):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def dev_environment(secret: str, **env: str) -> WorkspaceEnvironment:
    return WorkspaceEnvironment(
        image=DEV_IMAGE,
        network=Network.NONE,
        env={**GIT_ENV, **env},
        secrets={"SECRET": secret},
    )


def reference_binary(client: Any, image: str = DEV_IMAGE) -> bytes:
    """``make`` of FILES in a throwaway container of ``image`` (same path, same user)."""
    tmp = Path(tempfile.mkdtemp(prefix="bashfleet-ref-"))
    try:
        write_project(tmp)
        client.containers.run(
            image,
            ["make"],
            volumes={str(tmp): {"bind": "/workspace", "mode": "rw"}},
            working_dir="/workspace",
            user=f"{SANDBOX_UID}:{SANDBOX_UID}",
            network_mode="none",
            remove=True,
            labels={"bashfleet.test": "reference-build"},
        )
        return (tmp / "hello").read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
