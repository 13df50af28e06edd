"""Asking the person at the terminal, and only when there is one."""

from __future__ import annotations

import sys

__all__ = ["ask"]


def ask(question: str, default: bool) -> bool:
    """A yes/no question on stderr; without a terminal on both ends the answer is no, so a
    script never hangs on a prompt and never gets a destructive default."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    sys.stderr.write(f"{question} {'[Y/n]' if default else '[y/N]'} ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return default if not answer else answer in ("y", "yes")
