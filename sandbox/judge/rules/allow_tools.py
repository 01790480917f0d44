"""Allowlists of read-only options: searchers, stream editors, logs, wrappers, shell builtins.

No I/O. ``ALLOWED`` (every table) is what the classifier reads.
"""

from __future__ import annotations

from sandbox.judge.rules.allow import FREE, Allowed, allow
from sandbox.judge.rules.allow import HELP as _HELP
from sandbox.judge.rules.allow import names as _names
from sandbox.judge.rules.allow_files import FILE_TOOLS

OTHER: dict[str, Allowed] = dict.fromkeys(_names("bzcat xzcat zstdcat lz4cat"), FILE_TOOLS["zcat"])
OTHER.update(
    {
        "xargs": FREE,  # the parser reads its options like GNU xargs; the target is judged
        # shell state in a subshell: the variables they set are checked by rules/shell.py
        **dict.fromkeys(
            _names(
                "cd pushd popd export set shopt umask ulimit unset read readarray mapfile let "
                "getopts shift declare typeset local readonly exit return logout"
            ),
            FREE,
        ),
        "command": allow("pvV"),
        "time": allow("pvq", "f", f"portability verbose quiet {_HELP}", "format"),
        "sed": allow(
            "nErszu",
            "lef",
            "quiet silent regexp-extended separate null-data "
            f"unbuffered posix debug sandbox follow-symlinks binary {_HELP}",
            "line-length expression file",
            risky=True,
        ),
        **dict.fromkeys(
            _names("awk gawk mawk nawk busybox-awk"),
            allow(
                "bcgMnNPrsStV",
                "Fve",
                "posix traditional sandbox characters-as-bytes "
                f"re-interval use-lc-numeric non-decimal-data {_HELP}",
                "field-separator assign source",
                risky=True,
            ),
        ),
        "rg": allow(
            "iSsFwxvclnNHpuUaLz0qeIjmABCgtTrEMfo",
            "egtTmABCjMrEf",
            "ignore-case smart-case case-sensitive fixed-strings word-regexp line-regexp "
            "invert-match count count-matches files-with-matches files-without-match "
            "line-number no-line-number with-filename no-filename pretty heading no-heading "
            "hidden no-ignore no-ignore-vcs no-ignore-dot no-ignore-parent no-ignore-global "
            "follow search-zip null quiet files json vimgrep only-matching column "
            "no-messages stats trim multiline multiline-dotall crlf text binary "
            "sort-files type-list no-config one-file-system passthru include-zero "
            f"byte-offset debug {_HELP}",
            "regexp glob iglob type type-not max-count after-context before-context context "
            "threads max-depth max-columns max-filesize replace encoding color colors sort "
            "sortr field-match-separator field-context-separator context-separator "
            "path-separator engine type-add",
            risky=True,
        ),
        **dict.fromkeys(
            _names("fd fdfind"),
            allow(
                "HIsiFgpaLl0u1qd",
                "edtEcS",
                "hidden no-ignore no-ignore-vcs "
                "case-sensitive ignore-case glob regex fixed-strings absolute-path "
                f"list-details follow full-path print0 prune show-errors quiet {_HELP}",
                "extension type exclude max-depth min-depth exact-depth size changed-within "
                "changed-before owner color threads max-results base-directory search-path",
                risky=True,
            ),
        ),
        "iconv": allow("cls", "ft", f"list silent {_HELP}", "from-code to-code", risky=True),
        "yq": allow(
            "rjPCMeNIop",
            "",
            f"raw-output exit-status no-colors colors null-input prettyPrint {_HELP}",
            "indent output-format input-format expression",
            risky=True,
        ),
    }
)
OTHER["journalctl"] = allow(
    "abefkmNqrxl",
    "nuptSUDoMIgF",
    "all pager-end follow reverse quiet merge utc no-hostname no-pager no-full full dmesg "
    f"list-boots disk-usage catalog user system fields header {_HELP}",
    "unit user-unit since until directory file output grep priority identifier field "
    "output-fields facility cursor after-cursor",
    "boot lines",
)
OTHER["dmesg"] = allow(
    "dehHkLPrtTuwxS",
    "fl",
    f"decode human kernel nopager raw ctime notime userspace follow show-delta reltime {_HELP}",
    "facility level since until time-format",
    "color",
)

ALLOWED: dict[str, Allowed] = {**FILE_TOOLS, **OTHER}
