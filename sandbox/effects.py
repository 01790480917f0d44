"""Moved to ``sandbox.judge.effects``; this module re-exports it for existing imports."""

from sandbox.judge.effects import *  # noqa: F403
from sandbox.judge.effects import __all__  # noqa: F401
