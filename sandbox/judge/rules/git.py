"""Flag rules for git: which subcommands and options only read the repository.

No I/O here. ``git -c`` with a key whose value is a program (core.pager,
alias.*, core.sshCommand ...) is dangerous: git would run it.
"""

from __future__ import annotations

import re

from sandbox.judge.rules.flags import (
    COND,
    DANGER,
    SAFE,
    SEQ,
    Finding,
    outside,
    words,
)
from sandbox.judge.syntax import Command, Word
from sandbox.judge.verdict import judge_text

_GIT_READ = words(
    "status log show diff blame grep ls-files ls-tree rev-parse rev-list describe shortlog "
    "cat-file whatchanged name-rev merge-base cherry count-objects verify-commit verify-tag "
    "for-each-ref show-ref var version help diff-tree diff-files diff-index check-ignore "
    "check-attr show-branch range-diff annotate"
)
_GIT_NETWORK = words("clone fetch ls-remote remote-update archive bundle fsck gc lfs")
_GIT_WRITE = words(
    "add commit merge rebase push pull checkout switch restore stash rm mv cherry-pick revert "
    "reset am apply init notes worktree submodule tag branch config update-index update-ref "
    "mergetool bisect sparse-checkout replace prune repack maintenance remote reflog "
    "format-patch"
)
# Listing forms of subcommands that otherwise write.
_GIT_LIST_FORMS: dict[str, frozenset[str]] = {
    "branch": words(
        "-a -r -v -vv -l --list --all --remotes --verbose --contains --merged --no-merged "
        "--show-current --sort --format --color --no-color --points-at"
    ),
    "tag": words("-l --list -n --contains --merged --no-merged --sort --points-at"),
    "stash": frozenset({"list", "show"}),
    "remote": frozenset({"-v", "--verbose", "get-url"}),
    "config": words(
        "--get --get-all --get-regexp --list -l --show-origin --show-scope --name-only "
        "--global --local --system -z --null --type --default --bool --int --path"
    ),
    "worktree": frozenset({"list"}),
    "submodule": frozenset({"status", "summary"}),
    "notes": frozenset({"list", "show"}),
    "reflog": frozenset({"show", "--date", "-n"}),
    "bisect": frozenset({"log", "view", "visualize"}),
}
# `git -c key=value`: keys whose value is a program git runs.
_GIT_CODE_KEYS = re.compile(
    r"^(core\.(pager|editor|sshcommand|fsmonitor|hookspath|askpass|gitproxy)|alias\.|"
    r"diff\..*(external|textconv|command)|filter\.|credential\.|pager\.|sequence\.editor|"
    r"gpg\.program|protocol\.|uploadpack\.|remote\..*\.(receivepack|uploadpack|proxy)|"
    r"include\.|includeif\.|merge\..*\.driver|http\.proxy|url\.)",
    re.I,
)
_GIT_CHANGING_FLAGS = words(
    "-d -D -m -M -c -C -a -s -f -u --delete --move --copy --force --set-upstream-to "
    "--unset-upstream --edit-description --track --annotate --sign add remove rm rename "
    "set-url drop pop apply clear push expire delete"
)
_GIT_GLOBAL_VALUES = frozenset(
    {"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--config-env", "--super-prefix"}
)


def git(cmd: Command) -> Finding | None:
    args = cmd.args
    i = 0
    finding: Finding | None = None
    while i < len(args) and (args[i].value or "").startswith("-"):
        v = args[i].value or ""
        key = v.partition("=")[0]
        value = args[i + 1].value if i + 1 < len(args) and "=" not in v else v.partition("=")[2]
        if key in ("-c", "--config-env"):
            if value is None or _GIT_CODE_KEYS.match(value):
                return DANGER, f"git -c {value or '?'} can make git run another program"
            finding = COND, f"git -c {value} changes configuration for this run"
        elif key == "--exec-path" and "=" in v:
            return DANGER, "git --exec-path runs git commands from another directory"
        elif key in ("-C", "--git-dir", "--work-tree") and (
            value is None
            or value.startswith(("/", "~", "$"))
            or outside(Word(text=value, value=value))
        ):
            # another repository's config can name programs (core.fsmonitor, diff drivers)
            finding = COND, f"git {key} {value or '?'} reads another repository's configuration"
        elif key in ("--version", "--help", "-h"):
            return SAFE, "git --version only prints"
        i += 2 if key in _GIT_GLOBAL_VALUES and "=" not in v else 1
    if i >= len(args):
        return finding or (SAFE, "git alone only prints help")
    sub = args[i].value
    rest = args[i + 1 :]
    verdict = _git_sub(sub, rest)
    if finding and finding[0].rank > verdict[0].rank:
        return finding
    return verdict


def _flags(values: list[str | None]) -> set[str]:
    """Option names, with short clusters split: `-fu` is `-f` and `-u` (as git reads it)."""
    flags: set[str] = set()
    for v in values:
        name = (v or "").partition("=")[0]
        flags.add(name)
        if name.startswith("-") and not name.startswith("--") and len(name) > 2:
            flags.update(f"-{letter}" for letter in name[1:] if letter.isalpha())
    return flags


def _git_sub(sub: str | None, rest: tuple[Word, ...]) -> Finding:
    found = _git_sub_rules(sub, rest)
    if found[0] is SAFE and sub is not None:
        return _read_options(sub, rest) or found
    return found


def _git_sub_rules(sub: str | None, rest: tuple[Word, ...]) -> Finding:
    values = [w.value for w in rest]
    flags = _flags(values)
    if sub is None:
        return DANGER, "git subcommand is known only at run time"
    if sub == "submodule" and "foreach" in values:
        return _foreach(rest)
    if sub == "remote" and "show" in values and not flags & {"-n"}:
        return COND, "git remote show contacts the remote (the network)"
    if sub == "reset" and "--hard" in flags:
        return DANGER, "git reset --hard discards uncommitted work"
    if sub == "clean":
        if flags & {"-n", "--dry-run"}:
            return SAFE, "git clean -n only lists what it would delete"
        return DANGER, "git clean deletes untracked files"
    if sub == "push" and (
        flags & {"-f", "--force", "--force-with-lease", "--mirror", "--delete", "-d"}
        or any(v and v.startswith("+") for v in values)
    ):
        return DANGER, "git push --force rewrites remote history"
    if sub == "push" and any(v and v.startswith(":") for v in values):
        return DANGER, "git push :branch deletes a remote branch"
    if sub in ("log", "show", "diff") and "--ext-diff" in flags:
        return COND, f"git {sub} --ext-diff runs an external diff program"
    if sub == "archive" and flags & {"-o", "--output"}:
        return SEQ, "git archive -o writes a file"
    if sub in ("filter-branch", "filter-repo"):
        return DANGER, f"git {sub} rewrites history"
    if any(v and v.startswith("--output") and not v.startswith("--output-") for v in values):
        return SEQ, f"git {sub} --output writes a file"
    if sub == "grep" and flags & {"-O", "--open-files-in-pager"}:
        return COND, "git grep -O opens a pager"
    if sub in _GIT_READ:
        return SAFE, f"git {sub} only reads the repository"
    if sub == "config" and (
        flags & {"--get", "--get-all", "--get-regexp", "--list", "-l"}
        or (len(values) == 1 and values[0] is not None and not values[0].startswith("-"))
    ):
        return SAFE, "git config --get only reads configuration"
    listing = _GIT_LIST_FORMS.get(sub)
    if listing is not None and sub != "config":
        changes = flags & _GIT_CHANGING_FLAGS
        if (
            (not values and sub not in ("stash", "bisect", "worktree"))
            or (values and values[0] in listing and not changes)
            or (values and set(values) <= listing)
        ):
            return SAFE, f"git {sub} only lists"
    if sub in _GIT_NETWORK:
        return COND, f"git {sub} uses the network or rewrites repository storage"
    if sub in _GIT_WRITE:
        return SEQ, f"git {sub} changes the repository or working tree"
    return COND, f"unknown git subcommand {sub!r} (an alias or extension)"


def _foreach(rest: tuple[Word, ...]) -> Finding:

    values = [w.value for w in rest]
    script = values[values.index("foreach") + 1 :]
    script = [v for v in script if v not in ("--recursive", "-q", "--quiet")]
    if not script or any(v is None for v in script):
        return DANGER, "git submodule foreach runs shell code known only at run time"
    inner = judge_text(" ".join(v for v in script if v is not None))
    if inner.cls.rank > COND.rank:
        return inner.cls, f"git submodule foreach runs: {inner.reasons[0]}"
    return COND, "git submodule foreach runs a command in every submodule"


_LOG_DIFF = words(
    "-p -u -s -z -n -i -w -b -M -C -B -R -D -W -E -F -P -L -S -G -U -O -l -X -m -c -t -r -v "
    "--patch --no-patch --stat --shortstat --numstat --name-only --name-status --raw --summary "
    "--compact-summary --dirstat --cumulative --oneline --graph --decorate --no-decorate "
    "--all --branches --tags --remotes --not --no-walk --do-walk --reverse --first-parent "
    "--merges --no-merges --min-parents --max-parents --follow --date --since --until --after "
    "--before --author --committer --grep --all-match --invert-grep --regexp-ignore-case "
    "--basic-regexp --extended-regexp --fixed-strings --perl-regexp --format --pretty "
    "--abbrev-commit --no-abbrev-commit --abbrev --no-abbrev --color --no-color --color-words "
    "--color-moved --word-diff --word-diff-regex --cached --staged --no-index --exit-code "
    "--quiet --full-index --binary --src-prefix --dst-prefix --no-prefix --minimal "
    "--patience --histogram --diff-algorithm --ignore-all-space --ignore-space-change "
    "--ignore-space-at-eol --ignore-blank-lines --ignore-cr-at-eol --check --find-renames "
    "--find-copies --no-renames --diff-filter --relative --no-relative --unified "
    "--function-context --topo-order --date-order --author-date-order --left-right "
    "--cherry-pick --cherry-mark --boundary --simplify-by-decoration --full-history "
    "--ancestry-path --skip --max-count --log-size --no-notes --mailmap --no-mailmap "
    "--use-mailmap --no-ext-diff --no-textconv --pickaxe-all --pickaxe-regex --name-rev "
    "--no-walk --stat-width --stat-count --stat-name-width --full-diff --encoding "
    "--expand-tabs --no-expand-tabs --parents --children --show-linear-break --line-prefix "
    "--ita-invisible-in-index --merge-base --submodule --ignore-submodules --irreversible-delete "
    "--break-rewrites --dd --first-parent --remerge-diff --diff-merges --no-diff-merges "
    "--ours --theirs --base --combined --cc --show-pulls --single-worktree --in-commit-order "
    "--indent-heuristic --no-indent-heuristic --anchored --inter-hunk-context --text "
    "--reflog --walk-reflogs --source --glob --exclude --regexp --since-as-filter"
)
_STATUS = words(
    "-s -b -v -u -z --short --branch --porcelain --long --verbose --untracked-files --ignored "
    "--ignore-submodules --column --no-column --ahead-behind --no-ahead-behind --renames "
    "--no-renames --find-renames --show-stash"
)
_READ_OPTIONS: dict[str, frozenset[str]] = {
    "log": _LOG_DIFF,
    "show": _LOG_DIFF,
    "diff": _LOG_DIFF,
    "whatchanged": _LOG_DIFF,
    "shortlog": _LOG_DIFF | words("-e -n -s -w --email --numbered --summary --group"),
    "status": _STATUS,
    "branch": _GIT_LIST_FORMS["branch"] | words("--column --no-column --abbrev -i --ignore-case"),
}


def _read_options(sub: str, rest: tuple[Word, ...]) -> Finding | None:
    """Default deny for the everyday read subcommands: every option must be listed."""
    allowed = _READ_OPTIONS.get(sub)
    if allowed is None:
        return None
    for w in rest:
        v = w.value
        if v is None:
            if w.text.startswith("-"):
                return COND, f"git {sub} argument {w.text!r} may become an option"
            continue
        if v == "--":
            break
        if not v.startswith("-") or v == "-":
            continue
        name = v.partition("=")[0]
        if name in allowed or (name[1:].isdigit() and sub in ("log", "show", "shortlog")):
            continue
        if not name.startswith("--") and f"-{name[1:2]}" in allowed and name[1:2] in "nUlSGOLMCB":
            continue  # -n5, -U3, -Sfoo: a letter with its value attached
        if not name.startswith("--") and all(f"-{c}" in allowed for c in name[1:]):
            continue  # a cluster of listed letters: -sb
        return COND, f"git {sub} option {v!r} is not on its allowlist of read-only flags"
    if (
        sub == "branch"
        and any((w.value or "") and not (w.value or "").startswith("-") for w in rest)
        and not ({w.value for w in rest} & {"-l", "--list"})
    ):
        return SEQ, "git branch with a name creates a branch"
    return None
