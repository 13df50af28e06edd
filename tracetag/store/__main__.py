"""``python -m tracetag.store PATH``: compact the store at PATH beside its writers (see
:mod:`tracetag.store.compactor`); with ``--ids``, only build its id index. The store starts it
itself; at most one runs per store, and what it did (or why it could not) is the one line of
``PATH-compacting``."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from .compactor import build_id_index, compact_beside_writers, only_one
from .local import Store


def main() -> None:
    store = Store(sys.argv[1])
    with only_one(store) as free:
        if not free:
            return
        began = time.time()
        try:
            result: dict[str, Any] | None
            if "--ids" in sys.argv[2:]:
                result = {"id_index_built": build_id_index(store, wanted=True)}
            else:
                result = compact_beside_writers(store)
            line = f"{began:.0f} pid {os.getpid()} {time.time() - began:.1f}s {result}"
        except Exception as e:  # nobody waits for this process: the line says what happened
            line = f"{began:.0f} pid {os.getpid()} failed after {time.time() - began:.1f}s: {e!r}"
        path = store.path.with_name(store.path.name + "-compacting")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
