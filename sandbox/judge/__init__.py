"""The judge: script text -> statements -> class + reasons, effects, and the plan.

**No I/O in this package.** Nothing here opens a file, a socket or a process,
reads the environment or the clock, or imports flask, docker or the store:
every function turns values into values, so it is tested with plain tables
and can run anywhere (a request thread, a worker, the CLI). Whatever the judge
cannot understand is judged not safe; a statement beyond its budget raises
``sandbox.errors.InputTooComplex``.

    syntax.py     the values: Word, Redirect, Command, Statement
    tree.py       tree-sitter-bash, the walk's accumulator, the budget
    words.py      words and redirections (quote removal)
    commands.py   wrappers, bash -c / eval / trap scripts, find -exec, xargs
    walk.py       the walk over one statement's tree
    parse.py      script text -> statements (public: parse, parse_unit)
    verdict.py    Verdict, and the call-back rules use to judge an inner command
    classify.py   statement -> Verdict (public: classify, classify_text)
    rules/        per-program tables by tool family (allowlists of options,
                  subcommands, code runners, git, shell state and secrets)
    paths.py, effects_*.py, effects.py   statement -> reads/writes/resources
    plan.py       statements -> DAG

Imports only go down this list (no cycles). The old paths ``sandbox.parse``,
``sandbox.classify``, ``sandbox.effects`` and ``sandbox.plan`` re-export the
public names.
"""
