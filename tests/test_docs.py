"""The README's examples run as written, and name only commands that exist."""

from __future__ import annotations

import re
from pathlib import Path

import tracetag
from tracetag.api import TracetagClient
from tracetag.cli.docs import commands

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


def test_readme_opens_with_the_two_commands():
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    assert blocks[0].strip().startswith("pip install -e . && tracetag demo && tracetag search")
    assert blocks[1].strip() == "pip install -e '.[dev]' && python -m pytest"
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "\npython -m pytest\n" in ci  # CI runs the README's test command


def test_readme_recording_example(store_path):
    exec(python_blocks()[0], {})
    t = tracetag.get_trace(tracetag.get_last_active_trace_id())
    assert t.info.tags == {"environment": "production", "user_id": "user_123"}
    assert sorted(s.name for s in t.data.spans) == ["answer", "retrieve"]


def test_readme_tagging_example(conformance_store):
    exec(python_blocks()[1], {})
    client = TracetagClient(conformance_store)
    errors = client.search_traces(filter_string="status = 'ERROR'", max_results=None)
    assert errors and all(t.info.tags["needs_review"] == "true" for t in errors)
    latest = client.search_traces(filter_string="status = 'ERROR'", max_results=1)[0]
    assert latest.info.tags["a"] == "1" and latest.info.tags["b"] == "x"


def test_every_command_in_the_readme_exists():
    known = {" ".join(p) for p, _ in commands()}
    shell = "\n".join(re.findall(r"```sh\n(.*?)```", README, re.S))
    used = set(re.findall(r"(?:^|&& |\| )(tracetag(?: [a-z]+){1,2})", shell, re.M))
    assert len(used) > 15
    for line in used:
        words = line.split()
        assert any(" ".join(words[:n]) in known for n in (3, 2)), line
