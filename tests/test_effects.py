"""effects(): which paths and resources a statement reads and writes. Plain tables."""

from __future__ import annotations

import pytest

from sandbox.judge.effects import Effects, effects, normalise, overlaps
from sandbox.judge.parse import parse


def _effects(text: str) -> Effects:
    statements = parse(text)
    assert len(statements) == 1, statements
    return effects(statements[0])


def S(*items: str) -> frozenset[str]:  # reads like a set literal in the tables
    return frozenset(items)


# command, reads, writes, exact
FILES = [
    ("cat a.txt b.txt > out/c.txt", S("a.txt", "b.txt"), S("out/c.txt"), True),
    ("cat ./a//b/", S("a/b"), S(), True),
    ("grep -rn foo src", S("src"), S(), True),
    ("grep -e x -f pats.txt a b", S("a", "b", "pats.txt"), S(), True),
    ("grep foo", S(), S(), True),
    ("grep -r foo", S("."), S(), True),
    ("head -n 5 f", S("f"), S(), True),
    ("tail -n 3 -f log", S("log"), S(), True),
    ("wc -l < in.txt", S("in.txt"), S(), True),
    ("diff -u a b", S("a", "b"), S(), True),
    ("sort -o out.txt in.txt", S("in.txt"), S("out.txt"), True),
    ("sort --output=out.txt in.txt", S("in.txt"), S("out.txt"), True),
    ("uniq in out", S("in"), S("out"), True),
    ("echo hi | tee -a log.txt", S(), S("log.txt"), True),
    ("cp a b dir/", S("a", "b"), S("dir"), True),
    ("cp -t dir a b", S("a", "b"), S("dir"), True),
    ("mv a b", S("a"), S("a", "b"), True),
    ("rm -rf build", S(), S("build"), True),
    ("mkdir -p a/b c", S(), S("a/b", "c"), True),
    ("touch -r ref.txt new.txt", S("ref.txt"), S("new.txt"), True),
    ("chmod +x run.sh", S(), S("run.sh"), True),
    ("chmod -R -w dir", S(), S("dir"), True),
    ("chown -R user:group dir", S(), S("dir"), True),
    ("ln -s target link", S("target"), S("link"), True),
    ("truncate -s 0 f", S(), S("f"), True),
    ("sed -n 1p f", S("f"), S(), True),
    ("sed -i s/a/b/ f.txt", S("f.txt"), S("f.txt"), True),
    ("sed -i.bak -e s/a/b/ f.txt", S("f.txt"), S("f.txt", "f.txt.bak"), True),
    ("awk '{print $1}' data.csv", S("data.csv"), S(), True),
    ("awk -v n=1 -F, '$1 > n' x=1 data.csv", S("data.csv"), S(), True),
    ("find src -name '*.py'", S("src"), S(), True),
    ("find . -name '*.pyc' -delete", S("."), S("."), True),
    ("find src -exec rm {} \\;", S("src"), S("src"), True),
    ("ls", S("."), S(), True),
    ("ls -la src", S("src"), S(), True),
    ("du -sh", S("."), S(), True),
    ("stat -c %s f", S("f"), S(), True),
    ("tar czf out.tgz src", S("src"), S("out.tgz"), True),
    ("tar -xzf a.tgz -C dest", S("a.tgz"), S("dest"), True),
    ("tar tf a.tar", S("a.tar"), S(), True),
    ("gzip logs/a.log", S("logs/a.log"), S("logs/a.log", "logs/a.log.gz"), True),
    ("gunzip a.gz", S("a.gz"), S("a", "a.gz"), True),
    ("dd if=/dev/zero of=disk.img bs=1M", S("/dev/zero"), S("disk.img"), True),
    ("echo hi > /dev/null 2>&1", S(), S(), True),
    ("echo hi >&2", S(), S(), True),
    ("echo x > >(tee f)", S(), S("f"), True),
    ("diff <(sort a) <(sort b)", S("a", "b"), S(), True),
    ("echo $(cat a) > b", S("a"), S("b"), True),
    ("bash -c 'cat a > b'", S("a"), S("b"), True),
    ("[ -f x ] && cat y", S("."), S(), False),
    (
        "cat /etc/passwd ~/.bashrc $HOME/.profile ../sib/x",
        S("/etc/passwd", "~/.bashrc", "~/.profile", "../sib/x"),
        S(),
        True,
    ),
    ("curl -o out.html https://x", S(), S("out.html"), True),
    ("cat ../../up", S("/"), S(), True),
]

WIDENED = [
    ("ls src/*.py", S("src"), S(), "glob src/*.py widened to src"),
    ("cat out/$x.txt", S("out"), S(), "variable out/$x.txt widened to out"),
    ("rm $f", S(), S("."), "variable $f widened to ."),
    ('cp -r src/ "$DEST"', S("src"), S("."), 'variable "$DEST" widened to .'),
    ("cat {a,b}.txt", S("."), S(), "glob {a,b}.txt widened to ."),
    ("rm -f /tmp/*.log", S(), S("/tmp"), "glob /tmp/*.log widened to /tmp"),
    ("sort --output=$f in", S("in"), S("."), "variable $f widened to ."),
    ("cd sub && cat x > y", S("."), S("."), "relative to a changed directory"),
    ("cd /tmp && rm -rf *", S("/tmp"), S("/"), "relative to a changed directory"),
    ("make -j4", S("."), S("."), "make may read and write anything"),
    ("pytest -q", S("."), S("."), "pytest may"),
    ("python x.py", S("/"), S("/"), "python runs code"),
    ("python3 -m pytest", S("."), S("."), "python -m pytest"),
    ("./run.sh", S("/"), S("/"), "unknown program run.sh"),
    ("$CMD foo", S("/"), S("/"), "program name $CMD is dynamic"),
    ("sh script.sh", S("/"), S("/"), "sh runs a script"),
    ("awk '{print > \"o.txt\"}' data.csv", S("/"), S("/"), "awk program writes"),
    ("sed 's/a/b/w out' f", S("/"), S("/"), "sed script writes"),
    ("ls | xargs rm", S("."), S("."), "<stdin args>"),
    ("wget https://x/f.tgz", S(), S("."), "wget names the file"),
    ("git commit -m x", S("."), S("."), "git commit may change"),
    ("echo 'unterminated", S("/"), S("/"), "not understood"),
]


@pytest.mark.parametrize(("text", "reads", "writes", "exact"), FILES)
def test_file_effects(
    text: str, reads: frozenset[str], writes: frozenset[str], exact: bool
) -> None:
    e = _effects(text)
    assert (e.reads, e.writes, e.exact) == (reads, writes, exact)


@pytest.mark.parametrize(("text", "reads", "writes", "note"), WIDENED)
def test_widened_effects(
    text: str, reads: frozenset[str], writes: frozenset[str], note: str
) -> None:
    e = _effects(text)
    assert (e.reads, e.writes, e.exact) == (reads, writes, False)
    assert any(note in n for n in e.notes), e.notes


# command, resources touched, resources changed
RESOURCES = [
    ("kill -9 123", S("processes"), S("processes")),
    ("pkill -f worker", S("processes"), S("processes")),
    ("ps aux", S("processes"), S()),
    ("systemctl restart nginx", S("services"), S("services")),
    ("systemctl status nginx", S("services"), S()),
    ("service nginx status", S("services"), S()),
    ("apt-get install -y curl", S("packages", "network"), S("packages")),
    ("pip install requests", S("packages", "network"), S("packages")),
    ("pip list", S("packages"), S()),
    ("npm install", S("packages", "network"), S("packages")),
    ("curl -s https://x", S("network"), S()),
    ("curl -X POST -d @body.json https://x", S("network"), S("network")),
    ("wget -O - https://x", S("network"), S()),
    ("ssh host uptime", S("network"), S("network")),
    ("rsync -a src/ host:/backup", S("network"), S("network")),
    ("git status", S("git"), S()),
    ("git log --oneline", S("git"), S()),
    ("git add .", S("git"), S("git")),
    ("git branch -a", S("git"), S()),
    ("git branch feature", S("git"), S("git")),
    ("git stash", S("git"), S("git")),
    ("git stash list", S("git"), S()),
    ("git fetch", S("git", "network"), S("git")),
    ("git push origin main", S("git", "network"), S("git", "network")),
    ("git clone https://x/r.git", S("git", "network"), S()),
    ("sysctl -w a=1", S("system"), S("system")),
    ("sysctl a.b", S("system"), S()),
    ("iptables -L", S("system"), S()),
    ("iptables -A INPUT -j DROP", S("system"), S("system")),
    ("date", S("system"), S()),
    ("date -s 2020-01-01", S("system"), S("system")),
    ("docker ps", S("docker"), S()),
    ("docker image ls", S("docker"), S()),
    ("docker rm -f c", S("docker"), S("docker")),
    ("export A=1", S("session"), S("session")),
    ("X=1", S("session"), S("session")),
    ("cd sub", S("session"), S("session")),
    ("echo hi", S(), S()),
]


@pytest.mark.parametrize(("text", "resources", "changed"), RESOURCES)
def test_resources(text: str, resources: frozenset[str], changed: frozenset[str]) -> None:
    e = _effects(text)
    assert (e.resources, e.resource_writes) == (resources, changed)
    assert e.resource_reads == resources - changed


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("./a//b/", "a/b"),
        ("a/../b", "b"),
        ("", "."),
        ("./", "."),
        ("a/..", "."),
        ("//etc///passwd", "/etc/passwd"),
        ("/..", "/"),
        ("~", "~"),
        ("~/x/../y", "~/y"),
        ("../x/./y", "../x/y"),
        ("..", "/"),
        ("../..", "/"),
        ("../../x", "/"),
    ],
)
def test_normalise(path: str, normal: str) -> None:
    assert normalise(path) == normal


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("a", "a", True),
        ("a", "a/b", True),
        ("a/b", "a", True),
        ("a", "ab", False),
        ("a/b", "a/c", False),
        (".", "a/b", True),
        (".", "../x", False),
        ("/", "a", True),
        ("/", "/etc", True),
        ("/", "~/x", True),
        ("/etc", "etc", False),
        ("/etc", "/etc/passwd", True),
        ("/etc", "/etcetera", False),
        ("~", "~/x", True),
        ("~", ".", False),
        ("../x", "../x/y", True),
        ("./a//b/", "a/b/c", True),
    ],
)
def test_overlaps(a: str, b: str, expected: bool) -> None:
    assert overlaps(a, b) is expected
    assert overlaps(b, a) is expected
