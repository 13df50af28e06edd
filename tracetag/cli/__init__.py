"""The ``tracetag`` command: parses arguments, makes one library call, renders.

Exit codes: 0 success; 1 not found or partly failed (unknown ids, lint findings); 2 bad input
(usage, filter, tag); 3 the store is unusable (not a store, damaged, locked). Errors are one
line on stderr (a filter error adds the filter and a caret), never a traceback.
Heavy modules (rich, lark, the store) are imported inside the commands that use them.
"""

from __future__ import annotations

import gc
from importlib import import_module

from .app import app

# Importing a command module registers its commands, in the order --help lists them.
for _module in ("traces", "tagging", "admin", "serve", "ui"):
    import_module(f".{_module}", __name__)

__all__ = ["app", "main"]


def main() -> None:
    # A command lives for a moment and makes no garbage cycles worth collecting; without the
    # cyclic collector, holding 100,000 search results is 2-3x faster.
    gc.disable()
    app(prog_name="tracetag")
