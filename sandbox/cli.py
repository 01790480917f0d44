"""The `bashfleet` console script. Argument parsing and printing only."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

from sandbox import __version__
from sandbox.errors import BashfleetError

COLOURS = {"safe": "32", "conditional": "33", "sequential": "36", "dangerous": "31;1"}


def data_dir(arg: str | None) -> Path:
    raw = arg or os.environ.get("BASHFLEET_DATA") or str(Path.home() / ".local/share/bashfleet")
    return Path(raw).expanduser()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bashfleet",
        description="Run batches of shell commands concurrently and safely.",
    )
    p.add_argument("--version", action="version", version=f"bashfleet {__version__}")
    p.add_argument(
        "--data", help="data folder (default: $BASHFLEET_DATA or ~/.local/share/bashfleet)"
    )
    p.add_argument("--config", help="a TOML file of settings (below flags and environment)")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    c = sub.add_parser("classify", help="judge commands without running them")
    c.add_argument("commands", nargs="*", metavar="COMMAND", help="each argument is one unit")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c.add_argument("--file", type=Path, help="judge every top-level statement of a script")

    r = sub.add_parser("run", help="run a batch (one command per top-level statement of FILE)")
    r.add_argument("file", metavar="FILE", help="the script ('-' for standard input)")
    r.add_argument("--jobs", "-j", type=int, default=None, help="most commands at once")
    r.add_argument("--workspace", "-w", type=Path, default=Path.cwd(), help="working folder")
    r.add_argument("--isolation", choices=("auto", "docker", "local"), default="auto")
    r.add_argument("--json", action="store_true", help="print a JSON summary on stdout at the end")
    r.add_argument("--timeout", type=float, default=None, help="wall-clock limit per command (s)")
    r.add_argument("--retries", type=int, default=0, help="retries for safe/conditional commands")
    r.add_argument(
        "--on-failure",
        choices=("skip_dependents", "continue", "halt"),
        default=None,
        help="after a failure: skip what reads its writes (default), run on, or start nothing "
        "later (the default when the script starts with `set -e`)",
    )
    r.add_argument(
        "--deadline", type=float, default=None, help="wall-clock limit for the whole batch (s)"
    )

    sub.add_parser("doctor", help="check Docker, the sandbox image, bubblewrap and the database")

    from sandbox.accounts_cli import add_parsers

    add_parsers(sub)
    from sandbox.workspace_cli import add_image_parsers
    from sandbox.workspace_cli import add_parsers as add_workspace_parsers

    add_workspace_parsers(sub)

    img = sub.add_parser("image", help="the sandbox image")
    img_sub = img.add_subparsers(dest="image_cmd", metavar="ACTION")
    b = img_sub.add_parser("build", help="build a sandbox image locally (no registry)")
    b.add_argument(
        "--profile",
        choices=("base", "dev"),
        default="base",
        help="base: bashfleet-sandbox:latest (bash, coreutils, python3); dev: "
        "bashfleet-dev:latest (base plus git, make, gcc, python3 venv/pip, nodejs, npm, "
        "curl, unzip, jq)",
    )
    b.add_argument("--tag", default=None, help="the tag (default: the profile's)")
    b.add_argument("--force", action="store_true", help="rebuild even if the tag exists")
    add_image_parsers(img_sub)
    return p


class CliExtension(Protocol):
    """A command added by another layer (the web portal adds `serve`)."""

    name: str

    def add(self, sub: argparse._SubParsersAction) -> None: ...  # type: ignore[type-arg]

    def run(self, args: argparse.Namespace, data: Path) -> int: ...


EXTENSION_GROUP = "bashfleet.cli"


def installed_extensions() -> list[CliExtension]:
    """Commands other packages register under the ``bashfleet.cli`` entry-point group
    (`bashfleet mcp`, `bashfleet submit`): the engine names none of them."""
    from importlib.metadata import entry_points

    found: list[CliExtension] = []
    for ep in entry_points(group=EXTENSION_GROUP):
        try:
            found.append(ep.load()())
        except Exception as e:  # a broken extension must not take the engine's commands down
            print(f"bashfleet: the `{ep.name}` command is unavailable ({e})", file=sys.stderr)
    return found


ENGINE_COMMANDS = {"classify", "run", "doctor", "user", "token", "image", "workspace", "team"}


def _command_word(argv: Sequence[str]) -> str | None:
    """The subcommand in ``argv`` (None: none, or only options such as --help)."""
    words = iter(argv)
    for word in words:
        if word in ("--data", "--config"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None, extensions: Sequence[CliExtension] = ()) -> int:
    names = {ext.name for ext in extensions}
    word = _command_word(sys.argv[1:] if argv is None else argv)
    if word not in ENGINE_COMMANDS and word not in names:
        # entry points are looked up only when needed: the scan costs tens of ms, and
        # `bashfleet run` starts in about a hundred
        extensions = [*extensions, *(e for e in installed_extensions() if e.name not in names)]
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for ext in extensions:
        ext.add(sub)
    args = parser.parse_args(argv)
    if not args.cmd:
        parser.print_help()
        return 2
    try:
        from sandbox import config

        path = config.find(args.config, args.data or os.environ.get("BASHFLEET_DATA"))
        if path is not None:
            config.load(path)
        for ext in extensions:
            if args.cmd == ext.name:
                return ext.run(args, data_dir(args.data))
        if args.cmd in ("user", "token"):
            from sandbox.accounts_cli import run_token, run_user

            runner = run_user if args.cmd == "user" else run_token
            return runner(args, data_dir(args.data))
        if args.cmd in ("workspace", "team"):
            from sandbox.workspace_cli import run_team, run_workspace

            return (run_workspace if args.cmd == "workspace" else run_team)(
                args, data_dir(args.data)
            )
        if args.cmd == "image" and args.image_cmd in ("allow", "list"):
            from sandbox.workspace_cli import run_image

            return run_image(args, data_dir(args.data))
        if args.cmd == "classify":
            return cmd_classify(args, sys.stdout)
        if args.cmd == "run":
            return cmd_run(args, data_dir(args.data))
        if args.cmd == "doctor":
            from sandbox.doctor import run_doctor

            return run_doctor(data_dir(args.data), sys.stdout)
        if args.cmd == "image":
            return cmd_image(args, parser)
    except BashfleetError as e:
        print(f"bashfleet: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    parser.print_help()
    return 2


def cmd_classify(args: argparse.Namespace, out: IO[str]) -> int:
    from sandbox.judge.classify import classify
    from sandbox.judge.effects import effects
    from sandbox.judge.parse import parse, parse_unit

    if args.file is not None:
        try:
            text = _read_text(args.file)
        except OSError as e:
            raise BashfleetError(f"cannot read {args.file}: {e.strerror}") from e
        statements = parse(text)
    else:
        if not args.commands:
            raise BashfleetError("give at least one COMMAND, or --file F")
        statements = [parse_unit(c) for c in args.commands]
    colour = out.isatty() and not os.environ.get("NO_COLOR")
    for stmt in statements:
        verdict = classify(stmt)
        eff = effects(stmt)
        record = {
            "command": stmt.text,
            "class": verdict.cls.value,
            "reads": sorted(eff.reads),
            "writes": sorted(eff.writes),
            "reasons": list(verdict.reasons),
        }
        if args.json:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            out.write(_human(record, colour))
    return 0


def _human(record: Mapping[str, object], colour: bool) -> str:
    cls = str(record["class"])
    label = f"{cls:<11}"
    if colour:
        label = f"\x1b[{COLOURS[cls]}m{label}\x1b[0m"
    command = str(record["command"]).replace("\n", "\\n")
    lines = [f"{label} {command}"]
    reads, writes = record["reads"], record["writes"]
    if reads or writes:
        lines.append(
            f"{'':11}   reads: {', '.join(reads) or '-'}  writes: {', '.join(writes) or '-'}"  # type: ignore[arg-type]
        )
    for reason in record["reasons"]:  # type: ignore[attr-defined]
        lines.append(f"{'':11}   - {reason}")
    return "\n".join(lines) + "\n"


def _read_text(path: Path | str) -> str:
    raw = sys.stdin.buffer.read() if str(path) == "-" else Path(path).read_bytes()
    if b"\x00" in raw:
        raise BashfleetError(f"{path} looks binary (it contains NUL bytes); give a text script")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BashfleetError(f"{path} is not UTF-8 text (byte {e.start}); convert it first") from e


def cmd_run(args: argparse.Namespace, data: Path) -> int:
    if args.jobs is not None and args.jobs < 1:
        raise BashfleetError("--jobs must be at least 1")
    if args.deadline is not None and not args.deadline > 0:
        raise BashfleetError("--deadline must be more than 0 seconds")
    try:
        text = _read_text(args.file)
    except OSError as e:
        raise BashfleetError(f"cannot read {args.file}: {e.strerror}") from e
    # The sandbox warms up while the rest of the engine is imported and the batch planned.
    from sandbox.executors.local import warming
    from sandbox.executors.rootfs import trees_dir

    local = warming(args.workspace, None if args.isolation == "local" else trees_dir(data))
    try:
        from sandbox.runner import RunOptions, run_script
    except BaseException:
        local.close()
        raise
    opts = RunOptions(
        jobs=args.jobs,
        workspace=args.workspace,
        isolation=args.isolation,
        json=args.json,
        timeout_s=args.timeout,
        retries=args.retries,
        on_failure=args.on_failure,
        deadline_s=args.deadline,
        durations_file=data / "durations.json",
    )
    return run_script(text, opts, sys.stdout.buffer, sys.stderr, local=local)


def cmd_image(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.image_cmd != "build":
        parser.parse_args(["image", "--help"])
        return 2
    from sandbox.image import build_profile

    tag = build_profile(args.profile, tag=args.tag, force=args.force)
    print(tag)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
