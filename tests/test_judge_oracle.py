"""A dynamic oracle (issue 14, Build point 3): the kernel checks the rules, not their author.

Every command the judge calls safe (from the labelled corpus, and mutations of
it: inserted flags, quoting, backslashes, redirections, subshells, line
splits) runs in one throwaway container: no network, read-only root, cap_drop
ALL, a non-root user, a copy of a small fixture workspace and a fake ``$HOME``
holding decoy secrets. Around each command a tree listing (path, size, mtime,
mode) of the workspace, ``$HOME`` and ``/tmp`` is taken; any difference is a
write, and the decoy marker in its output is a secret read. A command judged
safe must do neither. What it ever finds goes to tests/corpus/false_safe.tsv.

Network attempts and processes executed are not observed (the image has no
strace): the container has no network, and running code is covered by the
rules' own tests.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from sandbox.errors import InputTooComplex
from sandbox.judge.classify import classify_text
from sandbox.judge.rules.allow_tools import ALLOWED
from sandbox.model import CommandClass
from tests.docker_fixtures import docker_client, sandbox_image  # noqa: F401
from tests.test_classify import CORPUS

MARKER = "DECOY-SECRET-5f1c"

_DRIVER = r"""
set -u
cp -a /fixture/workspace/. /workspace/ && cp -a /fixture/home/. /home/decoy/
export HOME=/home/decoy SECRET_TOKEN=__MARKER__ PATH=/usr/local/bin:/usr/bin:/bin
# /tmp's own mtime is left out: a temporary file created and removed again is no write
snap() { find /workspace /home/decoy /tmp -xdev -mindepth 1 -printf '%p|%s|%T@|%m|%y\n' \
  2>/dev/null | sort; find /workspace /home/decoy -maxdepth 0 -printf '%p|%T@|%m\n'; }
i=0
before=$(snap)  # each command's "after" is the next one's "before"
while IFS= read -r -d '' cmd; do
  cd /workspace || exit 1
  out=$(timeout -s KILL 1 bash -c "$cmd" </dev/null 2>&1 | head -c 65536)
  after=$(snap)
  if [ "$before" != "$after" ]; then
    changed=$(diff <(printf '%s\n' "$before") <(printf '%s\n' "$after") | grep '^[<>]' | head -3)
    printf 'WRITE\t%d\t%s\n' "$i" "$(printf '%s' "$changed" | tr '\n' ' ')"
    find /workspace /home/decoy -mindepth 1 -delete 2>/dev/null
    cp -a /fixture/workspace/. /workspace/ && cp -a /fixture/home/. /home/decoy/
    after=$(snap)
  fi
  before=$after
  case $out in *__MARKER__*) printf 'SECRET\t%d\n' "$i" ;; esac
  i=$((i + 1))
done < /fixture/commands
printf 'DONE\t%d\n' "$i"
""".replace("__MARKER__", MARKER)

FILES = {
    "README.md": "# fixture\nTODO: more\n",
    "a.txt": "foo\nbar\nfoo\n",
    "b.txt": "bar\nbaz\n",
    "f": "a b c\n1 2 3\nstart\nx\nend\n",
    "notes.txt": "note\n",
    "names.txt": "bob\nalice\n",
    "data.csv": "a,b\n1,2\n",
    "log.txt": "line\n",
    "app.log": "ERROR x\nok\n",
    "package.json": '{"dependencies": {"a": "1"}}\n',
    "items.json": '[{"name": "x"}]\n',
    "counts.txt": "3 a\n1 b\n",
    "src/app.py": "def main():\n    pass  # TODO\n",
    "src/main.c": "int main(void) { return 0; }\n",
    "sub/dir/deep.txt": "deep\n",
    ".env": f"TOKEN={MARKER}\n",
}
HOME_FILES = {
    ".ssh/id_rsa": f"-----BEGIN KEY-----\n{MARKER}\n",
    ".aws/credentials": f"[default]\naws_secret_access_key = {MARKER}\n",
    ".netrc": f"machine x login u password {MARKER}\n",
}

# Mutations: options that write or run code in some program, quoting, splitting.
_FLAGS = ["-o x.out", "--output=x.out", "-i", "-w x.out", "-C", "-K", "-delete", "-fprint x.out",
          "--pre=touch", "-d", "-s", "-T x.out", "-e 'w x.out'", "'-o' x.out", "-ox.out",
          "--out=x.out", "-exec touch x.out ;", "-R", "-H", "-O", "-f x.out"]  # fmt: skip
_WRAPS = ["( {} )", "{} 2>/dev/null", "bash -c '{}'", "{} | cat", "timeout 1 {}", "\\{}",
          "{} \\\n", "echo x; {}", "{} > /dev/null"]  # fmt: skip


def mutations(commands: list[str], n: int, seed: int = 14) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        base = rng.choice(commands)
        words = base.split(" ")
        if rng.random() < 0.7 and "'" not in base:
            words.insert(rng.randrange(1, len(words) + 1), rng.choice(_FLAGS))
        text = " ".join(words)
        if rng.random() < 0.5 and "'" not in text:
            text = rng.choice(_WRAPS).format(text)
        out.append(text)
    return out


def judged_safe(texts: list[str]) -> list[str]:
    safe: list[str] = []
    for text in texts:
        try:
            if classify_text(text).cls is CommandClass.SAFE:
                safe.append(text)
        except InputTooComplex:
            continue
    return safe


def run_oracle(client: Any, image: str, commands: list[str], tmp: Path) -> tuple[int, list[str]]:
    """(commands run, what each offending one did)."""
    for name, text in FILES.items():
        (tmp / "workspace" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "workspace" / name).write_text(text)
    for name, text in HOME_FILES.items():
        (tmp / "home" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "home" / name).write_text(text)
    (tmp / "commands").write_bytes(b"".join(c.encode() + b"\0" for c in commands))
    (tmp / "driver.sh").write_text(_DRIVER)
    for path in [tmp, *tmp.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    owned = "uid=65534,gid=65534,mode=0755"
    out: bytes = client.containers.run(
        image,
        ["bash", "/fixture/driver.sh"],
        volumes={str(tmp): {"bind": "/fixture", "mode": "ro"}},
        tmpfs={
            "/workspace": f"size=16m,{owned}",
            "/home/decoy": f"size=4m,{owned}",
            "/tmp": "size=16m,mode=1777",
        },
        network_mode="none",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        user="65534:65534",
        pids_limit=256,
        mem_limit="512m",
        remove=True,
        stderr=True,
    )
    lines = out.decode("utf-8", "replace").splitlines()
    done = [line for line in lines if line.startswith("DONE\t")]
    assert done, "the oracle did not finish:\n" + "\n".join(lines[-20:])
    found = []
    for line in lines:
        kind, _, rest = line.partition("\t")
        if kind in ("WRITE", "SECRET"):
            index, _, detail = rest.partition("\t")
            found.append(f"{kind}: {commands[int(index)]!r} {detail}")
    return int(done[-1].split("\t")[1]), found


@pytest.mark.docker
def test_what_is_judged_safe_writes_nothing(
    docker_client: Any,  # noqa: F811
    sandbox_image: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    corpus_safe = judged_safe([cmd for _, cmd, _ in CORPUS if "\x00" not in cmd])
    mutants = mutations(corpus_safe, 800)
    mutants_safe = judged_safe(mutants)
    commands = corpus_safe + mutants_safe
    ran, found = run_oracle(docker_client, sandbox_image, commands, tmp_path)
    print(
        f"\noracle: {len(corpus_safe)} corpus commands and {len(mutants_safe)} of {len(mutants)} "
        f"mutants judged safe; {ran} run; {len(found)} writes or secret reads"
    )
    assert ran == len(commands)
    assert not found, "judged safe, but:\n" + "\n".join(found[:30])


def flag_sweep(programs: set[str]) -> list[str]:
    """Every option on every allowlist, once each, with a value that would be a file."""
    commands: list[str] = []
    seen: set[int] = set()  # grep, egrep, fgrep ... share one table: one of them is enough
    for program, allowed in sorted(ALLOWED.items()):
        if program not in programs or allowed.any_args or id(allowed) in seen:
            continue
        seen.add(id(allowed))
        for letter in sorted(allowed.short | allowed.short_values):
            commands.append(f"{program} -{letter} x.out f")
        for name in sorted(allowed.long | allowed.long_values | allowed.long_optional):
            value = "=x.out" if name in allowed.long_values | allowed.long_optional else ""
            commands.append(f"{program} {name}{value} f")
    return commands


@pytest.mark.docker
def test_every_allowed_flag_writes_nothing(
    docker_client: Any,  # noqa: F811
    sandbox_image: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The allowlists themselves, checked by the kernel: each listed option of each safe
    program that the image has, run once."""
    listing: bytes = docker_client.containers.run(
        sandbox_image, ["bash", "-c", "compgen -c"], network_mode="none", remove=True
    )
    programs = set(listing.decode().split())
    sweep = judged_safe(flag_sweep(programs))
    ran, found = run_oracle(docker_client, sandbox_image, sweep, tmp_path)
    print(f"\nflag sweep: {ran} options of {len({c.split()[0] for c in sweep})} programs run")
    assert ran == len(sweep) and ran > 300
    assert not found, "judged safe, but:\n" + "\n".join(found[:30])


@pytest.mark.docker
def test_the_oracle_sees_writes_and_secrets(
    docker_client: Any,  # noqa: F811
    sandbox_image: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The oracle can fail: known writers and secret readers are caught."""
    probes = ["touch new.txt", "sort -o a.txt a.txt", "cat .env", "cat ~/.ssh/id_rsa", "ls"]
    ran, found = run_oracle(docker_client, sandbox_image, probes, tmp_path)
    assert ran == len(probes)
    caught = " ".join(found)
    for probe in probes[:4]:
        assert repr(probe) in caught, found
    assert "'ls'" not in caught
