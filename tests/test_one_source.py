"""Lists that are written in two places are held equal here (one source of truth, checked)."""

from __future__ import annotations

import re
from importlib import import_module
from pathlib import Path

import tracetag.errors as errors
from tracetag.analytics import SORTS
from tracetag.cli.docs import SHELLS

ROOT = Path(__file__).resolve().parents[1]
cli_app = import_module("tracetag.cli.app")  # the module (tracetag.cli.app is also the Typer)


def test_sort_keys_and_shells():
    assert cli_app.SORTS == SORTS
    assert SHELLS == cli_app.SHELLS
    assert sorted(p.suffix[1:] for p in (ROOT / "completions").iterdir()) == sorted(SHELLS)


def test_exit_codes_in_the_readme_are_the_error_classes():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Exit codes", 1)[1].split("\n\n", 2)[1]
    documented = {int(m) for m in re.findall(r"^\| (\d) \|", table, re.M)}
    classes = {
        cls.exit_code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.TracetagError)
    }
    assert documented == classes | {0}
    for cls in (errors.InvalidInput, errors.InvalidQuery, errors.FilterSyntaxError):
        assert cls.exit_code == 2
    for cls in (errors.StoreError, errors.NotAStore, errors.StoreCorrupted, errors.StoreLocked):
        assert cls.exit_code == 3


def test_store_invariants_are_listed_once():
    """docs/store.md numbers them; the code refers to them by number and never lists them."""
    doc = (ROOT / "docs" / "store.md").read_text(encoding="utf-8")
    section = doc.split("## Invariants that make it safe", 1)[1].split("\n## ", 1)[0]
    numbers = [int(n) for n in re.findall(r"^(\d+)\. ", section, re.M)]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 10
    for path in (ROOT / "tracetag" / "store").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "Invariants that make it safe" not in text, path
        for n in re.findall(r"invariant (\d+)", text):
            assert int(n) in numbers, (path, n)
