"""Executors: the only places that touch processes (local) or Docker (docker)."""
