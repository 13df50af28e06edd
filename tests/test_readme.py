"""The README's commands run, in order, on a fresh store filled by ``tracetag demo``, and each
one finds something: the tour works on the data a new user has."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TOUR = README[README.index("## A short tour") : README.index("## Exit codes")]
# Exit code 1 is the documented answer of these commands when they find something to report.
MAY_EXIT_1 = ("tracetag lint",)


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def _commands() -> list[str]:
    out = []
    for block in _blocks(TOUR, "sh"):
        for line in block.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                out.append(line)
    return out


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("readme")
    bindir = Path(sys.executable).parent
    env = {
        **os.environ,
        "TRACETAG_STORE": str(folder / "store.json"),
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
        "EDITOR": "true",  # tag edit: the editor saves nothing, so nothing is written
        "VISUAL": "true",
    }
    if shutil.which("tracetag", path=env["PATH"]) is None:
        pytest.fail("the tracetag console script is not installed beside this Python")
    first = README.split("```sh\n", 1)[1].split("```", 1)[0].strip()
    quick = first.split("&&", 1)[1].strip()  # past "pip install -e ." : the main job
    r = subprocess.run(["bash", "-c", quick], env=env, cwd=folder, capture_output=True)
    assert r.returncode == 0 and re.search(rb"tr-[0-9a-f]{32}", r.stdout), r.stderr
    return env, folder


@pytest.mark.slow
def test_every_tour_command_finds_something(demo_env):
    env, folder = demo_env
    ran = 0
    for line in _commands():
        assignment = re.match(r"^(\w+)=\$\((.*)\)", line.split("  #")[0].strip())
        if assignment:
            r = subprocess.run(
                ["bash", "-c", assignment.group(2)], env=env, cwd=folder, capture_output=True
            )
            value = r.stdout.decode().strip()
            assert r.returncode == 0 and value, (line, r.stderr)
            env = {**env, assignment.group(1): value}
            continue
        r = subprocess.run(["bash", "-c", line], env=env, cwd=folder, capture_output=True)
        allowed = (0, 1) if line.startswith(MAY_EXIT_1) else (0,)
        assert r.returncode in allowed, (line, r.returncode, r.stderr.decode())
        assert b"Traceback" not in r.stderr, line
        assert r.stdout.strip() or r.stderr.strip(), f"{line}: printed nothing"
        if line.startswith("tracetag search") and "--explain" not in line and "|" not in line:
            assert re.search(rb"tr-[0-9a-f]{32}", r.stdout), f"{line}: found no trace"
        ran += 1
    assert ran >= 25


def test_the_tours_python_runs(demo_env):
    env, folder = demo_env
    for block in _blocks(TOUR, "python"):
        r = subprocess.run(
            [sys.executable, "-c", block], env=env, cwd=folder, capture_output=True, timeout=120
        )
        assert r.returncode == 0, (block, r.stderr.decode())
