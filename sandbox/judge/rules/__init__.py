"""Per-program rules, one module per tool family. No I/O.

flags.py   option splitting, paths, file and text tools (sort -o, tar, rm -r ...)
allow.py   allowlists of read-only options for safe programs (default deny)
text.py    sed scripts, awk programs, find expressions
git.py     git subcommands, options and -c keys
code.py    interpreters, shells, eval, source
tools.py   package managers, builds, network, services, runners
shell.py   variables, builtins that store code, secrets
table.py   program -> Rule (default class, description, check)
"""
