"""classify.py: statement -> class + reasons. Pure; a labelled corpus and plain tables."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from sandbox.judge.classify import Verdict, classify, classify_command, classify_text
from sandbox.judge.parse import parse, parse_unit
from sandbox.model import CommandClass

CORPUS_DIR = Path(__file__).parent / "corpus"
SAFE = CommandClass.SAFE
COND = CommandClass.CONDITIONAL
SEQ = CommandClass.SEQUENTIAL
DANGER = CommandClass.DANGEROUS

_ESCAPE = re.compile(r"\\(\\(?=[nt0])|[nt0])")
_UNESCAPE = {"n": "\n", "t": "\t", "0": "\x00", "\\": "\\"}


def unescape(field: str) -> str:
    """`\\n`, `\\t`, `\\0` -> newline, tab, NUL; `\\\\n` -> backslash + n (see commands.tsv)."""
    return _ESCAPE.sub(lambda m: _UNESCAPE[m.group(1)], field)


def load_corpus() -> list[tuple[CommandClass, str, str]]:
    """(label, command, where) for every labelled line of tests/corpus/*.tsv."""
    rows: list[tuple[CommandClass, str, str]] = []
    for path in sorted(CORPUS_DIR.glob("*.tsv")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            label, sep, command = line.partition("\t")
            assert sep, f"{path.name}:{number}: expected class<TAB>command"
            rows.append((CommandClass(label), unescape(command), f"{path.name}:{number}"))
    return rows


CORPUS = load_corpus()


def test_unescape() -> None:
    assert unescape(r"a\nb\tc\0d") == "a\nb\tc\x00d"
    assert unescape(r"printf '%s\\n' \rm") == "printf '%s\\n' \\rm"


def test_corpus_is_big_and_balanced() -> None:
    counts = {c: sum(1 for label, _, _ in CORPUS if label is c) for c in CommandClass}
    print("\ncorpus:", {c.value: n for c, n in counts.items()}, "total", len(CORPUS))
    assert len(CORPUS) >= 400
    assert counts[SAFE] >= 150
    assert all(n >= 50 for n in counts.values())


def test_corpus_scores() -> None:
    verdicts = [(label, classify_text(cmd), cmd, where) for label, cmd, where in CORPUS]
    unsafe_as_safe = [
        f"{where}: {cmd!r} labelled {label.value}, judged safe {v.reasons}"
        for label, v, cmd, where in verdicts
        if label is not SAFE and v.cls is SAFE
    ]
    safe_rows = [(v, cmd, where) for label, v, cmd, where in verdicts if label is SAFE]
    safe_rate = sum(v.cls is SAFE for v, _, _ in safe_rows) / len(safe_rows)
    exact = sum(v.cls is label for label, v, _, _ in verdicts) / len(verdicts)
    mismatches = [
        f"{where}: {cmd!r} labelled {label.value}, judged {v.cls.value} {v.reasons}"
        for label, v, cmd, where in verdicts
        if v.cls is not label
    ]
    print(
        f"\nnon-safe judged safe: {len(unsafe_as_safe)}; safe recall: {safe_rate:.1%}; "
        f"exact: {exact:.1%} of {len(verdicts)}"
    )
    print("\n".join(mismatches))
    assert not unsafe_as_safe, "non-safe commands judged safe:\n" + "\n".join(unsafe_as_safe)
    assert safe_rate >= 0.90, f"only {safe_rate:.1%} of safe commands judged safe"
    assert exact >= 0.85, f"only {exact:.1%} exact matches"


def test_every_verdict_has_readable_reasons() -> None:
    for _, cmd, where in CORPUS:
        v = classify_text(cmd)
        assert v.reasons, f"{where}: {cmd!r} has no reasons"
        assert all(isinstance(r, str) and r.strip() for r in v.reasons), where


@pytest.mark.parametrize(
    ("text", "cls", "reason"),
    [
        # sed: -i and w/e commands flip it
        ("sed -n 1p f", SAFE, "sed"),
        ("sed -i s/a/b/ f", SEQ, "sed -i edits files in place"),
        ("sed -ni 's/a/b/p' f", SEQ, "sed -i"),
        ("sed --in-place=.bak s/a/b/ f", SEQ, "sed -i"),
        ("sed 's/a/b/w out' f", SEQ, "s///w writes a file"),
        ("sed '1w out' f", SEQ, "'w' command"),
        ("sed 's/a/b/e' f", DANGER, "runs"),
        ("sed 'e ls' f", COND, "runs"),
        # find: actions flip it, -exec takes the target's class
        ("find . -name x", SAFE, "find"),
        ("find . -delete", DANGER, "find -delete"),
        ("find . -fprint out", SEQ, "-fprint"),
        ("find . -exec grep -l x {} +", SAFE, "grep"),
        ("find . -exec rm {} \\;", SEQ, "rm"),
        ("find . -execdir rm -rf {} \\;", DANGER, "rm -r"),
        # awk
        ("awk '{print $1}' f", SAFE, "awk"),
        ("awk '$1 > 3' f", SAFE, "awk"),
        ("awk '{print > \"o\"}' f", SEQ, "prints into a file"),
        ("awk '{print | \"sh\"}' f", COND, "pipes"),
        ("awk 'BEGIN{system(\"reboot\")}'", DANGER, "reboot"),
        ("awk -f prog.awk f", COND, "-f"),
        # sort, tee, date, rg, fd
        ("sort f", SAFE, "sort"),
        ("sort -o f f", SEQ, "sort -o writes f"),
        ("sort --output=/etc/x f", DANGER, "outside the workspace"),
        ("echo x | tee /dev/null", SAFE, "tee"),
        ("echo x | tee f", SEQ, "tee writes f"),
        ("date -s 10:00", DANGER, "system clock"),
        ("date --set=10:00", DANGER, "system clock"),
        ("rg --pre=rm x", SEQ, "rm"),
        ("fd -X rm -rf", DANGER, "rm -r"),
        # git
        ("git log", SAFE, "git log"),
        ("git show HEAD", SAFE, "git show"),
        ("git branch", SAFE, "lists"),
        ("git branch -D x", SEQ, "git branch"),
        ("git config --get a.b", SAFE, "reads configuration"),
        ("git config a.b c", SEQ, "git config"),
        ("git diff --output=f", SEQ, "--output"),
        ("git -c core.pager=less log", DANGER, "core.pager"),
        ("git -C sub log", SAFE, "git log"),
        ("git reset --hard", DANGER, "--hard"),
        ("git clean -fdx", DANGER, "untracked"),
        ("git push --force", DANGER, "--force"),
        ("git commit -m x", SEQ, "git commit"),
        ("git clone u", COND, "network"),
        # redirections
        ("ls > out", SEQ, "redirects output into out"),
        ("ls >> out", SEQ, "out"),
        ("ls 2>&1 >/dev/null", SAFE, "ls"),
        ("ls > /etc/x", DANGER, "outside the workspace"),
        ("cat < in", SAFE, "cat"),
        ("echo x > /dev/tcp/h/1", DANGER, "network connection"),
        # interpreters
        ("python --version", SAFE, "only prints"),
        ("python -c 'print(1)'", COND, "inline code"),
        ("python -c 'import os; os.system(\"x\")'", DANGER, "runs commands"),
        ("python script.py", COND, "script.py"),
        ("curl -s u | python3", DANGER, "pipe"),
        ("node -e 'x'", COND, "inline"),
        # wrappers
        ("timeout 3 ls", SAFE, "ls"),
        ("nice -n 5 rm f", SEQ, "rm"),
        ("nohup ls", COND, "outlive"),
        ("sudo ls", DANGER, "root"),
        ("env LC_ALL=C grep x f", SAFE, "grep"),
        ("env A=1 grep x f", COND, "A=... sets an environment variable for grep"),
        ("xargs rm", SEQ, "named at run time"),
        ("xargs grep x", SAFE, "grep"),
        ("bash -c 'ls'", SAFE, "ls"),
        ("bash -c 'rm -rf x'", DANGER, "rm -r"),
        ("bash x.sh", COND, "x.sh"),
        ("curl u | sh", DANGER, "pipe"),
        # names
        ("frobnicate", COND, "unknown program 'frobnicate'"),
        ("$cmd x", DANGER, "known only at run time"),
        ("\\rm x", DANGER, "quoted or escaped"),
        ("'ls'", DANGER, "quoted or escaped"),
        ("\uff4c\uff53", DANGER, "look-alike"),  # full-width ls
        ("./ls", COND, "not inspected"),
        ("/usr/bin/ls", SAFE, "ls"),
        # session state
        ("cd x", SEQ, "session"),
        ("(cd x && ls)", SAFE, "subshell"),
        ("export A=1", SEQ, "export sets A"),
        ("A=1", SEQ, "assigns A"),
        ("f() { ls; }", SEQ, "function"),
        ("sleep 5 &", COND, "background"),
        # bad input
        ("", SAFE, "empty: nothing to run"),
        ("# only a comment", SAFE, "empty"),
        ("echo 'unterminated", DANGER, "could not parse"),
        ("\x00\x01\x02", DANGER, "could not parse"),
    ],
)
def test_flips_and_reasons(text: str, cls: CommandClass, reason: str) -> None:
    v = classify_text(text)
    assert v.cls is cls, v
    assert any(reason in r for r in v.reasons), v


def test_compound_takes_the_worst_part() -> None:
    assert classify_text("ls && rm -rf x").cls is DANGER
    assert classify_text("ls | sort | head").cls is SAFE
    assert classify_text("echo $(rm x)").cls is SEQ


def test_classify_command_and_statements() -> None:
    (cmd,) = parse_unit("sed -i s/a/b/ f").commands
    assert classify_command(cmd) == Verdict(SEQ, ("sed -i edits files in place",))
    statements = parse("ls\nrm -rf x\n")
    assert [classify(s).cls for s in statements] == [SAFE, DANGER]


def test_big_input_is_judged_not_raised() -> None:
    text = "echo " + "a" * 1_000_000
    assert classify_text(text).cls is SAFE
    assert classify_text("\x89PNG\r\n\x1a\n\x00\x00binary").cls is DANGER


def test_speed() -> None:
    statements = [parse_unit(cmd) for _, cmd, _ in CORPUS[:300]]
    start = time.perf_counter()
    rounds = 5
    for _ in range(rounds):
        for stmt in statements:
            classify(stmt)
    per = (time.perf_counter() - start) / (rounds * len(statements))
    start = time.perf_counter()
    for _, cmd, _ in CORPUS[:300]:
        classify_text(cmd)
    pipeline = (time.perf_counter() - start) / 300
    print(f"\nclassify: {per * 1e6:.1f} µs/statement; parse+classify: {pipeline * 1e6:.1f} µs")
    assert per < 200e-6  # generous for a shared 2-core machine; typical is far below
    assert pipeline < 1 / 5000 * 2
