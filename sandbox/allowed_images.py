"""Which images a workspace may use: the default image, those an admin allowed by name
(``bashfleet image allow``), and any image in the local engine that ``bashfleet image
build`` made (it carries the ``bashfleet.image`` label): those are allowed as soon as they
are built. The engine is asked through the ``docker`` command, as ``image.py`` does."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, replace

from sandbox.image import VERSION_LABEL, default_image
from sandbox.store import Store

PROFILE_LABEL = "bashfleet.profile"  # base | dev, set by `bashfleet image build --profile`
DOCKER_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalImage:
    name: str
    size_bytes: int
    labels: dict[str, str]
    layers: int

    @property
    def built_here(self) -> bool:
        # `image build` imports one root filesystem: one layer. An image made FROM it
        # inherits the label but not the single layer, and is not allowed by it.
        return VERSION_LABEL in self.labels and self.layers == 1

    @property
    def profile(self) -> str | None:
        if PROFILE_LABEL in self.labels:
            return self.labels[PROFILE_LABEL]
        return "base" if self.built_here else None


def _docker(*args: str) -> subprocess.CompletedProcess[str] | None:
    if shutil.which("docker") is None:
        return None
    try:
        return subprocess.run(
            ["docker", *args], capture_output=True, text=True, check=False, timeout=DOCKER_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def local_image(name: str) -> LocalImage | None:
    """The image ``name`` in the local engine; None if absent or the engine does not answer."""
    return local_images([name]).get(name)


def local_images(names: list[str]) -> dict[str, LocalImage]:
    """Those of ``names`` the local engine has, asked in one call."""
    if not names:
        return {}
    form = "{{json .RepoTags}}\t{{json .Config.Labels}}\t{{.Size}}\t{{len .RootFS.Layers}}"
    done = _docker("image", "inspect", "--format", form, "--", *names)
    if done is None:
        return {}
    found: dict[str, LocalImage] = {}
    for line in done.stdout.splitlines():
        try:
            tags, labels, size, layers = line.split("\t")
            image = LocalImage(
                name="",
                size_bytes=int(size),
                labels=json.loads(labels) or {},
                layers=int(layers),
            )
            for tag in json.loads(tags) or []:
                found[tag] = image
        except ValueError:
            continue
    out = {}
    for name in names:
        tagged = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
        if tagged in found:
            out[name] = replace(found[tagged], name=name)
    if len(names) == 1 and not out and done.returncode == 0 and done.stdout.strip():
        # asked by id or digest: the one answer is it
        tags, labels, size, layers = done.stdout.strip().split("\t")
        out[names[0]] = LocalImage(
            name=names[0], size_bytes=int(size), labels=json.loads(labels) or {}, layers=int(layers)
        )
    return out


def built_images() -> list[str]:
    """Tags in the local engine built by `bashfleet image build` (any profile)."""
    done = _docker(
        "image", "ls", "--filter", f"label={VERSION_LABEL}", "--format", "{{.Repository}}:{{.Tag}}"
    )
    if done is None or done.returncode != 0:
        return []
    tags = sorted({t for t in done.stdout.split() if "<none>" not in t})
    found = local_images(tags)
    return [t for t in tags if t in found and found[t].built_here]


def is_allowed(store: Store, image: str) -> bool:
    if image == default_image() or store.images.contains(image):
        return True
    found = local_image(image)
    return found is not None and found.built_here


def allowed_images(store: Store) -> list[dict[str, object]]:
    """Every allowed image: name, where its allowance comes from, and what the local engine
    has of it (present, size, profile label)."""
    rows: dict[str, dict[str, object]] = {}
    rows[default_image()] = {"allowed_by": "default"}
    for tag in built_images():
        rows.setdefault(tag, {"allowed_by": "built"})
    for record in store.images.list():
        rows.setdefault(
            record.name,
            {"allowed_by": record.added_by, "added_at": record.added_at.isoformat()},
        )
    present = local_images(sorted(rows))
    out = []
    for name in sorted(rows):
        found = present.get(name)
        out.append(
            {
                "image": name,
                **rows[name],
                "present": found is not None,
                "size_bytes": found.size_bytes if found else None,
                "profile": found.profile if found else None,
            }
        )
    return out
