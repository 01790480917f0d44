"""Moved to ``sandbox.judge.plan``; this module re-exports it for existing imports."""

from sandbox.judge.plan import *  # noqa: F403
from sandbox.judge.plan import __all__  # noqa: F401
