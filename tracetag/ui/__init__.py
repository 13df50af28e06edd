"""``tracetag ui``: a terminal UI for looking at traces and tagging them (the ``ui`` extra:
Textual)."""

from __future__ import annotations

__all__ = ["available"]


def available() -> bool:
    try:
        import textual  # noqa: F401
    except ImportError:
        return False
    return True
