"""parse + classify never raise, whatever the text; text they cannot understand is never safe."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.errors import InputTooComplex
from sandbox.judge.classify import classify, classify_text
from sandbox.judge.parse import parse, parse_unit
from sandbox.model import CommandClass

# Pieces of shell syntax, so random scripts reach the interesting paths.
SHELL_BITS = [
    "ls", "rm", "-rf", "sed", "-i", "awk", "'{print > \"f\"}'", "find", "-exec", "{}", "\\;",
    "|", "||", "&&", ";", "&", ">", ">>", "2>&1", "<", "<<EOF\nx\nEOF\n", "$(", ")", "`", "'",
    '"', "\\", "$x", "${x:-y}", "(", "{", "}", "bash", "-c", "eval", "xargs", "sudo", "env",
    "A=1", "f()", "if", "then", "fi", "for", "do", "done", "case", "esac", "\n", " ", "\x00",
    "\uff4c\uff53", "git", "push", "--force", "python", "-c", "#", "*", "?", "[", "]", "~",
    "/etc/x",
]  # fmt: skip
scripts = st.lists(st.sampled_from(SHELL_BITS), max_size=40).map(" ".join)
texts = st.one_of(
    st.text(max_size=300), scripts, st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
)


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_never_raises(text: str) -> None:
    statements = parse(text)
    unit = parse_unit(text)
    verdict = classify_text(text)
    assert verdict.reasons
    for stmt in statements:
        assert classify(stmt).reasons
    if unit.problems:
        assert verdict.cls is CommandClass.DANGEROUS, (text, verdict)


@settings(deadline=None, max_examples=200)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_text_with_problems_is_never_safe(text: str) -> None:
    stmt = parse_unit(text)
    if stmt.problems:
        assert classify(stmt).cls is not CommandClass.SAFE


@settings(deadline=None, max_examples=50)
@given(st.text(alphabet="\x00\x01\x7f\ufffd\ud800abc$(`'\"", max_size=100))
def test_nul_and_surrogates(text: str) -> None:
    classify_text(text)


def test_deep_nesting() -> None:
    text = "echo " + "$(" * 50 + "rm -rf /" + ")" * 50
    verdict = classify_text(text)
    assert verdict.cls is CommandClass.DANGEROUS, verdict
    with pytest.raises(InputTooComplex, match=r"too complex|levels"):  # beyond the budget
        classify_text("echo " + "$(" * 500 + "rm -rf /" + ")" * 500)
    unbalanced = "$(" * 500
    assert classify_text(unbalanced).cls is CommandClass.DANGEROUS
    nested = "bash -c " + "'bash -c " * 20 + "ls" + "'" * 20
    assert classify_text(nested).cls is not CommandClass.SAFE


def test_one_megabyte() -> None:
    start = time.perf_counter()
    big = "ls -la " + "x" * (1 << 20)
    assert classify_text(big).cls is CommandClass.SAFE
    many = "ls\n" * 50_000
    assert all(classify(s).cls is CommandClass.SAFE for s in parse(many))
    with pytest.raises(InputTooComplex):  # as one unit it is beyond the budget
        classify_text(many)
    garbage = "(((((" + "'\"`$" * 250_000
    with pytest.raises(InputTooComplex):
        classify_text(garbage)
    assert any(classify(s).cls is CommandClass.DANGEROUS for s in parse("(((((" + "'\"`$" * 500))
    assert time.perf_counter() - start < 20
