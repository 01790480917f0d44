"""Moved to ``sandbox.judge.parse``; this module re-exports it for existing imports."""

from sandbox.judge.parse import *  # noqa: F403
from sandbox.judge.parse import __all__  # noqa: F401
