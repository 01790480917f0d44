"""Sandbox image: apt source parsing (pure) and building/importing (real engine)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from sandbox import image

pytest_plugins = ("docker_fixtures",)


def _etc(tmp_path: Path, *, os_release: str, files: dict[str, str]) -> Path:
    etc = tmp_path / "etc"
    (etc / "apt" / "sources.list.d").mkdir(parents=True)
    (etc / "os-release").write_text(os_release)
    for name, text in files.items():
        (etc / "apt" / name).write_text(text)
    return etc


def test_mirror_from_deb822_sources_skips_security(tmp_path: Path) -> None:
    etc = _etc(
        tmp_path,
        os_release="ID=debian\nVERSION_CODENAME=bookworm\n",
        files={
            "sources.list.d/debian.sources": (
                "Types: deb\nURIs: http://mirror.example/debian-security\n"
                "Suites: bookworm-security\nComponents: main\n\n"
                "Types: deb\n# a comment\nURIs: http://mirror.example/debian\n"
                "Suites: bookworm bookworm-updates\nComponents: main\n"
            ),
            "sources.list.d/off.sources.disabled": "Types: deb\nURIs: http://x\nSuites: bookworm\n",
        },
    )
    assert image.apt_mirror(etc) == ("http://mirror.example/debian", "bookworm")


def test_mirror_from_one_line_sources_list(tmp_path: Path) -> None:
    etc = _etc(
        tmp_path,
        os_release='VERSION_CODENAME="trixie"\n',
        files={
            "sources.list": (
                "# deb http://commented.example/debian trixie main\n"
                "deb-src http://src.example/debian trixie main\n"
                "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian trixie main\n"
            )
        },
    )
    assert image.apt_mirror(etc) == ("http://one.example/debian", "trixie")


def test_no_debian_mirror_is_a_clear_error(tmp_path: Path) -> None:
    etc = _etc(tmp_path, os_release="VERSION_CODENAME=bookworm\n", files={})
    with pytest.raises(image.ExecutorError, match="no Debian apt mirror"):
        image.apt_mirror(etc)


def test_default_image_prefers_setting_then_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASHFLEET_IMAGE", raising=False)
    assert image.default_image() == "bashfleet-sandbox:latest"
    monkeypatch.setenv("BASHFLEET_IMAGE", "mine:1")
    assert image.default_image() == "mine:1"
    assert image.default_image("per-workspace:2") == "per-workspace:2"


@pytest.mark.docker
def test_default_image_has_bash_coreutils_and_the_sandbox_user(sandbox_image: str) -> None:
    assert image.image_present(sandbox_image)
    script = (
        "id sandbox; timeout --version | head -1; setsid --version; ps --version; grep -V | head -1"
    )
    done = subprocess.run(
        ["docker", "run", "--rm", sandbox_image, "bash", "-c", script],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "uid=1000(sandbox)" in done.stdout and "GNU coreutils" in done.stdout
    assert "util-linux" in done.stdout and "procps" in done.stdout


def test_profile_recipes_are_sorted_and_hashed_stably() -> None:
    assert list(image.DEV_PACKAGES) == sorted(image.DEV_PACKAGES)
    assert set(image.EXTRA_PACKAGES) <= set(image.DEV_PACKAGES)
    for needed in ("git", "make", "gcc", "python3-venv", "python3-pip", "nodejs", "npm"):
        assert needed in image.DEV_PACKAGES
    one = image.recipe_id("bookworm", image.DEV_PACKAGES)
    assert one == image.recipe_id("bookworm", tuple(reversed(image.DEV_PACKAGES)))
    assert one != image.recipe_id("trixie", image.DEV_PACKAGES)
    assert image.PROFILES["base"] == (image.DEFAULT_IMAGE, image.EXTRA_PACKAGES)
    with pytest.raises(ValueError, match="unknown image profile"):
        image.build_profile("huge")


@pytest.mark.docker
def test_a_built_dev_profile_is_not_rebuilt(docker_client: Any) -> None:
    tag = image.build_profile("dev")  # (scripts/test builds it first: a no-op then)
    before = _image_id(tag)
    assert image.build_profile("dev") == tag == image.DEV_IMAGE
    assert _image_id(tag) == before
    assert image._label(tag, image.PROFILE_LABEL) == "dev"
    assert image._label(tag, image.VERSION_LABEL) == image.IMAGE_VERSION


@pytest.mark.docker
def test_existing_tag_is_not_rebuilt(sandbox_image: str) -> None:
    before = _image_id(sandbox_image)
    assert image.build_image(sandbox_image) == sandbox_image
    assert _image_id(sandbox_image) == before


@pytest.mark.docker
def test_busybox_method_builds_a_usable_image(docker_client: Any) -> None:
    tag = f"bashfleet-test-{uuid.uuid4().hex[:8]}:busybox"
    try:
        assert not image.image_present(tag)
        image.build_image(tag, method="busybox")
        done = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--user",
                "1000:1000",
                tag,
                "bash",
                "-c",
                "id -u; echo $BASH_VERSION",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.splitlines()[0] == "1000" and done.stdout.splitlines()[1][0].isdigit()
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


def _image_id(tag: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
