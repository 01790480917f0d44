"""The optional TOML settings file: below flags and environment, typos are errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import config
from sandbox.errors import BashfleetError


def test_file_fills_only_unset_variables(tmp_path: Path) -> None:
    f = tmp_path / "bashfleet.toml"
    f.write_text('[bashfleet]\nisolation = "local"\nsubmit_rate = 30\nimage = "x:1"\n')
    env = {"BASHFLEET_IMAGE": "from-env:2"}
    applied = config.load(f, env)
    assert env == {
        "BASHFLEET_IMAGE": "from-env:2",
        "BASHFLEET_ISOLATION": "local",
        "BASHFLEET_SUBMIT_RATE": "30",
    }
    assert "BASHFLEET_IMAGE" not in applied


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("isolaton = 'local'", "unknown setting(s) isolaton"),
        ("isolation = ", "not valid TOML"),
        ("isolation = true", "must be a string or a number"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(BashfleetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config.load(f, {})


def test_cli_reads_the_file_from_the_data_folder(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "bashfleet.toml").write_text('isolaton = "x"\n')
    bf = str(Path(sys.executable).parent / "bashfleet")
    done = subprocess.run(
        [bf, "--data", str(tmp_path), "user", "list"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "unknown setting(s) isolaton" in done.stderr
