"""parse.py: text -> statements. Pure; plain tables."""

from __future__ import annotations

import pytest

from sandbox.judge.parse import parse, parse_unit


def programs(text: str) -> list[str | None]:
    return [c.program for c in parse_unit(text).commands]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ls -la", ["ls"]),
        ("ls | grep x | wc -l", ["ls", "grep", "wc"]),
        ("a && b || c", ["a", "b", "c"]),
        ("(cd x; make)", ["cd", "make"]),
        ("{ echo a; echo b; }", ["echo", "echo"]),
        ("for f in *; do rm $f; done", ["rm"]),
        ("while true; do sleep 1; done", ["true", "sleep"]),
        ("if test -f x; then cat x; else touch x; fi", ["test", "cat", "touch"]),
        ("f() { rm -rf /; }", ["rm"]),
        ("echo $(rm x)", ["echo", "rm"]),
        ("echo `rm x`", ["echo", "rm"]),
        ("diff <(ls a) <(ls b)", ["diff", "ls", "ls"]),
        ("cat <<EOF\n$(rm -rf x)\nEOF", ["cat", "rm"]),
        ("bash -c 'rm -rf x'", ["rm", "bash"]),
        ("sh -c \"bash -c 'touch y'\"", ["touch", "bash", "sh"]),
        ("eval 'rm x'", ["rm", "eval"]),
        ("find . -exec rm {} \\;", ["find", "rm"]),
        ("ls | xargs -n1 rm -f", ["ls", "xargs", "rm"]),
        ("sudo -u x env A=1 nice -n 5 timeout 3 rm f", ["rm"]),
        ("command -v ls", ["command"]),
        ("bash <<'EOF'\nrm -rf /\nEOF", ["rm", "bash"]),
    ],
)
def test_every_nested_command_is_found(text: str, expected: list[str]) -> None:
    assert sorted(p or "?" for p in programs(text)) == sorted(expected)


def test_wrappers_are_recorded() -> None:
    (cmd,) = parse_unit("sudo -u x timeout -s KILL 5 rm f").commands
    assert cmd.program == "rm"
    assert cmd.wrapper_names == ("sudo", "timeout")


def test_top_level_statements_and_lines() -> None:
    stmts = parse("ls\n# comment\necho a; echo b\ncat <<EOF\nx\nEOF\nsleep 1 &\n")
    assert [s.text for s in stmts] == ["ls", "echo a", "echo b", "cat <<EOF\nx\nEOF", "sleep 1 &"]
    assert [s.line for s in stmts] == [1, 3, 3, 4, 7]
    assert "background" in stmts[-1].constructs


@pytest.mark.parametrize(
    "text",
    ["echo 'unterminated", "if true; then", "echo $(", "case x in", "ls )", "a\x00b"],
)
def test_broken_text_is_a_problem_never_an_exception(text: str) -> None:
    stmt = parse_unit(text)
    assert stmt.problems, stmt


def test_words_know_when_they_are_dynamic() -> None:
    (cmd,) = parse_unit("cp \"$a\" 'b c' d\\ e *.txt").commands
    values = [w.value for w in cmd.argv]
    assert values == ["cp", None, "b c", "d e", "*.txt"]
    assert cmd.argv[4].glob and not cmd.argv[3].glob


def test_redirects() -> None:
    stmt = parse_unit("sort a > b 2>/dev/null < c >> d")
    ops = sorted((r.op, r.target.value if r.target else None) for r in stmt.redirects)
    assert ops == [("<", "c"), (">", "/dev/null"), (">", "b"), (">>", "d")]
    assert [r.writes for r in stmt.redirects if r.target and r.target.value == "/dev/null"] == [
        False
    ]


def test_empty_and_comment_only() -> None:
    assert parse("") == []
    assert parse("# nothing\n\n   \n") == []


def test_subshell_commands_are_marked_and_their_assignments_are_not_session_state() -> None:
    stmt = parse_unit("(cd x; a=1; ls)")
    assert [c.via for c in stmt.commands] == [("(...)",), ("(...)",)]
    assert stmt.assignments == ()
    assert parse_unit("a=1").assignments == ("a=1",)
    assert parse_unit("echo $(b=2)").assignments == ()


def test_arithmetic_command_assigns() -> None:
    assert parse_unit("((i++))").assignments == ("((i++))",)
    assert parse_unit("(( i > 3 ))").assignments == ()


@pytest.mark.parametrize("text", ["$(" * 500, "$(" * 3, "((((("])
def test_errors_that_swallow_the_script_are_problems(text: str) -> None:
    assert parse_unit(text).problems
    assert all(s.problems for s in parse(text)[-1:])


def test_pipeline_does_not_swallow_the_next_line() -> None:
    # tree-sitter-bash glues `rm -rf x > log` onto `head` here; parse must not.
    stmts = parse("a | g | head -n 20\nrm -rf x > log\nls\n")
    assert [s.text for s in stmts] == ["a | g | head -n 20", "rm -rf x > log", "ls"]
    assert [s.line for s in stmts] == [1, 2, 3]
    assert [s.index for s in stmts] == [0, 1, 2]
    assert parse("ls \\\n  -la | wc\n")[0].text == "ls \\\n  -la | wc"


def test_every_glued_line_is_cut_in_order() -> None:
    text = "cat *.txt | sort | uniq -c\necho lima > a.txt\n" * 2
    assert [s.text for s in parse(text)] == [
        "cat *.txt | sort | uniq -c",
        "echo lima > a.txt",
    ] * 2
