"""The shape of the code, checked: small modules and functions, no import cycles, and no
reaching into another unit's private names (a unit is a subpackage, or a top-level module)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "tracetag"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60
# A longer function is allowed where the line before it says why, starting with this.
LONG_MARK = "# long:"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _unit(module: str) -> str:
    """tracetag.store.base -> tracetag.store; tracetag.api -> tracetag.api."""
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and (PKG / parts[-1]).is_dir()):
        return ".".join(parts[:2])
    return module


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    base = module if _is_package(module) else module.rsplit(".", 1)[0]
    for _ in range(node.level - 1):
        base = base.rsplit(".", 1)[0]
    if node.level == 0:
        return node.module or ""
    return f"{base}.{node.module}" if node.module else base


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def _imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names, line) for every import, at any depth, outside TYPE_CHECKING."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            names = [a.name for a in node.names]
            # "from . import ast" imports the submodule, not the package
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            if subs:
                out += [(s, [], node.lineno) for s in subs]
            else:
                out.append((target, names, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
    return [(t, n, line) for t, n, line in out if t in MODULES]


def test_no_module_is_too_long():
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_too_long_without_a_reason():
    long = []
    for name, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                said = lines[first - 2].strip().startswith(LONG_MARK) if first > 1 else False
                if size > MAX_FUNCTION_LINES and not said:
                    long.append(f"{name}.{node.name} ({size} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_import_cycles():
    graph: dict[str, set[str]] = defaultdict(set)
    for module in MODULES:
        for target, _names, _line in _imports(module):
            # The package root only re-exports (lazily); importing it is not a dependency.
            if target != "tracetag" and target != module:
                graph[module].add(target)
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append([*stack[stack.index(t) :], t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def _private_definitions() -> dict[str, set[str]]:
    """Private attribute name -> the units that define it (methods, self._x = ..., class
    attributes, module-level names)."""
    defined: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        unit = _unit(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names = [node.attr]
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names = [node.id]
            for n in names:
                if n.startswith("_") and not n.startswith("__"):
                    defined[n].add(unit)
    return defined


def test_no_unit_touches_another_units_private_names():
    defined = _private_definitions()
    found = []
    for module, path in MODULES.items():
        unit = _unit(module)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for target, names, line in _imports(module):
            if _unit(target) != unit:
                found += [
                    f"{module}:{line} imports {target}.{n}"
                    for n in names
                    if n[:1] == "_" and n[:2] != "__"
                ]
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            if node.attr.startswith("__") or (
                isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            ):
                continue
            owners = defined.get(node.attr, set())
            if owners and unit not in owners:
                found.append(f"{module}:{node.lineno} uses .{node.attr} of {sorted(owners)}")
    assert not found, "private names used across units:\n" + "\n".join(found)
