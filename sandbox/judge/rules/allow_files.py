"""Allowlists of read-only options: file, text and system inspection tools. No I/O.

GNU coreutils, grep, diffutils, findutils, procps and util-linux, from their manuals;
a program's entry lists every option that neither writes nor runs code.
"""

from __future__ import annotations

from sandbox.judge.rules.allow import FREE, Allowed, allow
from sandbox.judge.rules.allow import HELP as _HELP
from sandbox.judge.rules.allow import names as _names

_GREP = allow(
    "EFGPiywxvcLloqsbHhnTZzrRUaIV",
    "efmABCdD",
    "extended-regexp fixed-strings basic-regexp perl-regexp ignore-case no-ignore-case "
    "word-regexp line-regexp null-data no-messages invert-match byte-offset line-number "
    "line-buffered with-filename no-filename only-matching quiet silent text recursive "
    "dereference-recursive files-without-match files-with-matches count initial-tab null "
    f"binary {_HELP}",
    "regexp file max-count label binary-files directories devices include exclude "
    "exclude-from exclude-dir before-context after-context context",
    "color colour",
    numeric=True,
)
_LS = allow(
    "aAbBcCdDfFgGhHiklLmnNopqQrRsStuUvxXZ1",
    "IwT",
    "all almost-all author escape directory dired classify file-type human-readable si "
    "dereference-command-line dereference-command-line-symlink-to-dir inode ignore-backups "
    "kibibytes dereference numeric-uid-gid literal no-group hide-control-chars "
    "show-control-chars quote-name recursive reverse size context zero full-time "
    f"group-directories-first {_HELP}",
    "hide ignore indicator-style sort time time-style tabsize width format block-size "
    "quoting-style",
    "color colour hyperlink",
)
_CAT = allow(
    "AbeEnstTuv",
    "",
    f"show-all number-nonblank show-ends number squeeze-blank show-tabs show-nonprinting {_HELP}",
)
_HEAD = allow(
    "qvz", "cn", f"quiet silent verbose zero-terminated {_HELP}", "bytes lines", numeric=True
)
_TAIL = allow(
    "fFqvzr",
    "cns",
    f"quiet silent verbose zero-terminated retry {_HELP}",
    "bytes lines sleep-interval pid max-unchanged-stats",
    "follow",
    numeric=True,
)
_WC = allow(
    "cmlLw",
    "",
    f"bytes chars lines max-line-length words zero-terminated {_HELP}",
    "files0-from total",
)
_CUT = allow(
    "snz",
    "bcdf",
    f"complement only-delimited zero-terminated {_HELP}",
    "bytes characters delimiter fields output-delimiter",
)
_SORT = allow(
    "bdfgiMhnRrVcCsumz",
    "ktS",
    "ignore-leading-blanks dictionary-order ignore-case general-numeric-sort "
    "ignore-nonprinting month-sort human-numeric-sort numeric-sort random-sort reverse "
    f"version-sort stable unique zero-terminated debug merge {_HELP}",
    "key field-separator buffer-size parallel sort batch-size files0-from",
    "check",
    risky=True,
)
_UNIQ = allow(
    "cdDiuz",
    "fsw",
    f"count repeated ignore-case unique zero-terminated {_HELP}",
    "skip-fields skip-chars check-chars",
    "all-repeated group",
    risky=True,
)
_DIFF = allow(
    "abBcdeEfhHilnNpPqrsStTuvwWxXyZ",
    "CDFILSUXx",
    "normal brief report-identical-files context unified ed rcs side-by-side "
    "left-column suppress-common-lines show-c-function paginate expand-tabs initial-tab "
    "suppress-blank-empty new-file unidirectional-new-file ignore-case "
    "ignore-file-name-case no-ignore-file-name-case ignore-tab-expansion "
    "ignore-trailing-space ignore-space-change ignore-all-space ignore-blank-lines text "
    f"strip-trailing-cr recursive minimal speed-large-files {_HELP}",
    "label width tabsize show-function-line ignore-matching-lines starting-file exclude "
    "exclude-from from-file to-file horizon-lines line-format old-line-format "
    "new-line-format unchanged-line-format old-group-format new-group-format "
    "changed-group-format unchanged-group-format ifdef",
    "color palette",
    numeric=True,
)
_DU = allow(
    "0abcDhHklLmPsSx",
    "dBtX",
    "all apparent-size bytes total dereference-args human-readable inodes dereference "
    f"count-links null separate-dirs si summarize one-file-system {_HELP}",
    "max-depth block-size threshold time-style exclude exclude-from files0-from",
    "time",
)
_DF = allow(
    "ahHiklPTv",
    "Btx",
    f"all human-readable si inodes local no-sync sync portability total print-type {_HELP}",
    "block-size type exclude-type",
    "output",
)
_JQ = allow(
    "rjacnesSCMRL0",
    "f",
    "raw-output join-output ascii-output compact-output null-input exit-status slurp "
    "sort-keys color-output monochrome-output raw-input tab seq stream stream-errors args "
    f"jsonargs raw-output0 unbuffered {_HELP}",
    "indent from-file arg argjson slurpfile rawfile",
)

FILE_TOOLS: dict[str, Allowed] = {
    **dict.fromkeys(_names("grep egrep fgrep zgrep"), _GREP),
    **dict.fromkeys(_names("ls dir vdir"), _LS),
    "cat": _CAT,
    "tac": allow("br", "s", f"before regex {_HELP}", "separator"),
    "nl": allow(
        "p",
        "bdfhilnsvw",
        _HELP,
        "body-numbering section-delimiter "
        "footer-numbering header-numbering line-increment join-blank-lines "
        "number-format number-separator starting-line-number number-width",
    ),
    "head": _HEAD,
    "tail": _TAIL,
    "wc": _WC,
    "cut": _CUT,
    "paste": allow("sz", "d", f"serial zero-terminated {_HELP}", "delimiters"),
    "join": allow(
        "ivz", "aejot", f"ignore-case check-order nocheck-order header zero-terminated {_HELP}"
    ),
    "comm": allow(
        "123iz", "", f"check-order nocheck-order total zero-terminated {_HELP}", "output-delimiter"
    ),
    "tr": allow("cCdst", "", f"complement delete squeeze-repeats truncate-set1 {_HELP}"),
    "rev": allow("", "", _HELP),
    "fold": allow("bs", "w", f"bytes spaces {_HELP}", "width", numeric=True),
    "column": allow(
        "tnexJLR",
        "cslNHOWdrEio",
        f"table json keep-empty-lines fillrows {_HELP}",
        "separator output-separator table-columns table-name output-width",
    ),
    "expand": allow("i", "t", f"initial {_HELP}", "tabs", numeric=True),
    "unexpand": allow("a", "t", f"all first-only {_HELP}", "tabs"),
    "sort": _SORT,
    "shuf": allow(
        "erz", "inG", f"echo repeat zero-terminated {_HELP}", "input-range head-count", risky=True
    ),
    "uniq": _UNIQ,
    "diff": _DIFF,
    "colordiff": _DIFF,
    "cmp": allow(
        "blsz",
        "in",
        f"print-bytes verbose quiet silent zero-terminated {_HELP}",
        "ignore-initial bytes",
    ),
    "du": _DU,
    "df": _DF,
    "jq": _JQ,
    "tree": allow(
        "adlfxpsughDFqNQrtvUCAJSnci",
        "LPI",
        f"dirsfirst noreport inodes device prune du si {_HELP} gitignore matchdirs ignore-case",
        "filelimit timefmt sort charset",
        risky=True,
    ),
    **dict.fromkeys(
        _names("base64 base32"),
        allow("diw", "", f"decode ignore-garbage {_HELP}", "wrap", risky=True),
    ),
    "basenc": allow(
        "diw",
        "",
        "decode ignore-garbage base64 base64url base32 base32hex "
        f"base16 base2msbf base2lsbf z85 {_HELP}",
        "wrap",
        risky=True,
    ),
    **dict.fromkeys(
        _names("md5sum sha1sum sha224sum sha256sum sha384sum sha512sum b2sum"),
        allow(
            "bctwz",
            "l",
            f"binary check tag text zero ignore-missing quiet status strict warn {_HELP}",
            "length",
        ),
    ),
    "cksum": allow(
        "bcrwz", "al", f"base64 check raw tag untagged zero {_HELP}", "algorithm length"
    ),
    "sum": allow("rs", "", f"sysv {_HELP}"),
    "file": allow(
        "bcEhiIkLNnprsvzZ0S",
        "eFfmP",
        "brief checking-printout dereference "
        "no-dereference keep-going list mime mime-type mime-encoding no-buffer "
        "no-pad preserve-date raw special-files uncompress uncompress-noreport "
        f"print0 extension apple {_HELP}",
        "exclude exclude-quiet separator files-from magic-file parameter",
        risky=True,
    ),
    "stat": allow("LftZ", "c", f"dereference file-system terse {_HELP}", "format printf cached"),
    "readlink": allow(
        "efmnqsvz",
        "",
        "canonicalize canonicalize-existing canonicalize-missing "
        f"no-newline quiet silent verbose zero {_HELP}",
    ),
    "realpath": allow(
        "emLPqsz",
        "",
        "canonicalize-existing canonicalize-missing logical "
        f"physical quiet strip no-symlinks zero {_HELP}",
        "relative-to relative-base",
    ),
    "basename": allow("asz", "", f"multiple zero {_HELP}", "suffix"),
    "dirname": allow("z", "", f"zero {_HELP}"),
    "pwd": allow("LP", "", _HELP),
    "od": allow(
        "bcdfiloxsv",
        "AjNStw",
        f"output-duplicates traditional {_HELP}",
        "address-radix skip-bytes read-bytes strings format width",
        numeric=True,
    ),
    "hexdump": allow("bcCdoxv", "efns", _HELP),
    "strings": allow(
        "adfw",
        "nteTs",
        f"all data print-file-name include-all-whitespace {_HELP}",
        "bytes radix encoding target output-separator unicode",
        numeric=True,
    ),
    "ps": FREE,  # no option writes or runs anything (procps ps)
    **dict.fromkeys(_names("pgrep pidof pstree"), FREE),
    **dict.fromkeys(_names("echo printf true false : test [ seq yes factor expr sleep"), FREE),
    **dict.fromkeys(_names("id whoami groups logname users tty nproc arch uname"), FREE),
    **dict.fromkeys(_names("which whereis type whatis apropos"), FREE),
    "find": FREE,  # its expression is read by the find rule (an allowlist of primaries)
    "netstat": allow(
        "acCeFghilMnNoprstuvwWxZ46",
        "",
        "all listening programs numeric "
        "numeric-hosts numeric-ports numeric-users route interfaces statistics "
        f"tcp udp raw unix extend verbose wide timers {_HELP}",
    ),
    "ss": allow(
        "hVHnrapmoiesbE46xtuwlOZz",
        "fA",
        "help version no-header numeric resolve "
        "all listening options extended memory info processes threads tcp udp raw "
        "unix summary events oneline",
        "family query",
    ),
    "arp": allow("aenv", "iHA", f"all numeric verbose {_HELP}", "device hw-type"),
    "free": allow(
        "bkmgthlvwW",
        "cs",
        "bytes kilo mega giga tera peta kibi mebi gibi tebi "
        f"pebi human lohi total wide committed {_HELP}",
        "count seconds",
    ),
    "uptime": allow("psV", "", f"pretty since {_HELP}"),
    "date": allow(
        "uRIq",
        "dfrI",
        f"utc universal rfc-email debug {_HELP}",
        "date file reference",
        "iso-8601 rfc-3339",
    ),
    "hostname": allow(
        "aAdfiIsy",
        "",
        f"alias all-fqdns domain fqdn long all-ip-addresses ip-address short yp nis {_HELP}",
    ),
    "env": allow("0", "", f"null {_HELP}"),
    "printenv": allow("0", "", f"null {_HELP}"),
    "lsblk": allow(
        "abdDfJlnpPrsStTzmOAEM",
        "eoxIQ",
        "all bytes nodeps discard fs json "
        f"list noheadings paths pairs raw inverse topology scsi {_HELP}",
        "exclude output sort include filter output-all",
    ),
    "lscpu": allow(
        "abcepxsyJB", "", f"all online offline extended parse json hex bytes physical {_HELP}"
    ),
    "zcat": allow("fLqv", "", f"force quiet verbose {_HELP}"),
    "xxd": allow(
        "abCEeipru",
        "cglosn",
        f"autoskip bits capitalize {_HELP}",
        "cols len seek groupsize offset name",
        risky=True,
    ),
    "look": allow("bdf", "t", f"alternative alphanum ignore-case {_HELP}", "terminate"),
    "numfmt": allow(
        "z",
        "d",
        f"debug zero-terminated {_HELP}",
        "delimiter field format "
        "from from-unit grouping header invalid padding round suffix to to-unit",
    ),
    "pr": allow("acdFfJmrt", "eEhiNnowlsSW", f"{_HELP}", numeric=True),
    "getent": allow("is", "", f"no-idn {_HELP}", "service"),
    "locale": allow(
        "ackmv", "", f"all-locales charmaps category-name keyword-name verbose {_HELP}"
    ),
}
