"""Moved to ``sandbox.judge.classify``; this module re-exports it for existing imports."""

from sandbox.judge.classify import *  # noqa: F403
from sandbox.judge.classify import __all__  # noqa: F401
