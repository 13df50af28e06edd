"""The filter language.

``grammar/filter.lark`` -> :mod:`.parser` -> :mod:`.ast` -> :mod:`.evaluate`.
"""

from __future__ import annotations

from ..errors import FilterSyntaxError
from .ast import Field, Node, tree
from .evaluate import compile_filter, field_getter, required_bytes
from .fields import parse_field
from .parser import parse_filter

__all__ = [
    "Field",
    "FilterSyntaxError",
    "Node",
    "compile_filter",
    "field_getter",
    "parse_field",
    "parse_filter",
    "required_bytes",
    "tree",
]
