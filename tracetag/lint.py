"""The tag linter: the naming guidelines of the reference page, checked across a whole store.

Rules (each id can be disabled in ``[tool.tracetag.lint]`` of ``pyproject.toml`` or ``[lint]``
of ``tracetag.toml``):

``key-case``            keys are lowercase (``ModelVer`` -> ``model_ver``)
``key-style``           words are joined by underscores, hierarchy by dots (``review status``)
``abbreviation``        no unclear abbreviations in keys (``env``, ``ver``, ``usr``...)
``version-format``      version-like tags use semantic versions (``2.1`` -> ``v2.1.0``)
``numeric-unit``        numeric measurements name their unit (``latency`` -> ``latency_ms``)
``value-abbreviation``  no abbreviated well-known values (``PROD`` -> ``production``)
``inconsistent-key``    one spelling per concept across traces (``env`` / ``environment``, and
                        configured synonyms such as ``user_type`` / ``user_segment``)
``inconsistent-value``  one spelling per value of a key (``Production`` / ``production``)

The last two are the valuable ones: they look across traces, which no per-write check can do.
``fix_findings`` renames keys and normalises values in one atomic write.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput
from .filters import parse_filter
from .planning import Selection, TagPlan
from .query import select
from .tags import TagChange, TagReport, plan_change

if TYPE_CHECKING:
    from .api import TracetagClient
    from .backend import ReadView
    from .filters import ast as A

__all__ = [
    "RULES",
    "Finding",
    "LintConfig",
    "check_rules",
    "fix_findings",
    "lint_store",
    "load_config",
]

RULES = (
    "key-case",
    "key-style",
    "abbreviation",
    "version-format",
    "numeric-unit",
    "value-abbreviation",
    "inconsistent-key",
    "inconsistent-value",
)
KEY_ABBREVIATIONS = {
    "env": "environment",
    "envt": "environment",
    "ver": "version",
    "vers": "version",
    "usr": "user",
    "msg": "message",
    "req": "request",
    "resp": "response",
    "res": "response",
    "sess": "session",
    "prio": "priority",
    "cfg": "config",
    "conf": "config",
    "svc": "service",
    "srv": "service",
    "lat": "latency",
    "dur": "duration",
    "err": "error",
    "cnt": "count",
    "num": "number",
    "ts": "timestamp",
    "tmpl": "template",
    "exp": "experiment",
    "grp": "group",
    "seg": "segment",
    "cust": "customer",
    "reg": "region",
}
VALUE_ABBREVIATIONS = {
    "prod": "production",
    "prd": "production",
    "dev": "development",
    "stg": "staging",
    "stage": "staging",
    "pre": "preprocessing",
    "post": "postprocessing",
}
# Different words for one concept (the reference page's "user_type" next to "user_segment");
# only reported when both spellings are in use, so a store that uses one of them is fine.
KEY_SYNONYMS = {"user_type": "user_segment"}
ENUM_KEYS = {"environment", "stage", "tier", "priority", "sla_tier", "variant", "region"}
MEASURE_WORDS = {
    "time": "ms",
    "latency": "ms",
    "duration": "ms",
    "elapsed": "ms",
    "delay": "ms",
    "timeout": "ms",
    "wait": "ms",
    "size": "mb",
    "memory": "mb",
    "length": "chars",
    "cost": "usd",
    "price": "usd",
}
UNIT_SUFFIXES = {
    "ms",
    "s",
    "sec",
    "secs",
    "seconds",
    "minutes",
    "min",
    "hours",
    "h",
    "days",
    "us",
    "ns",
    "mb",
    "kb",
    "gb",
    "bytes",
    "b",
    "tokens",
    "chars",
    "characters",
    "usd",
    "eur",
    "cents",
    "pct",
    "percent",
    "count",
    "ratio",
}
# Semantic versions with or without the "v" (the guidelines' own examples use both).
_SEMVER = re.compile(r"^v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.\-]+)?$")
_LOOSE_VERSION = re.compile(r"^[vV]?(\d+)(?:\.(\d+))?(?:\.(\d+))?([-+][0-9A-Za-z.\-]+)?$")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@dataclass
class LintConfig:
    disable: set[str] = field(default_factory=set)
    ignore_keys: list[str] = field(default_factory=lambda: ["mlflow.*"])
    key_abbreviations: dict[str, str] = field(default_factory=lambda: dict(KEY_ABBREVIATIONS))
    value_abbreviations: dict[str, str] = field(default_factory=lambda: dict(VALUE_ABBREVIATIONS))
    synonyms: dict[str, str] = field(default_factory=lambda: dict(KEY_SYNONYMS))
    source: str | None = None

    def enabled(self, rule: str) -> bool:
        return rule not in self.disable

    def ignored(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pat) for pat in self.ignore_keys)


def load_config(path: Path | None = None, start: Path | None = None) -> LintConfig:
    """``path``, else the nearest ``tracetag.toml`` or ``pyproject.toml`` with a lint table."""
    candidates: list[Path]
    if path is not None:
        candidates = [path]
    else:
        here = (start or Path.cwd()).resolve()
        candidates = [
            d / n for d in (here, *here.parents) for n in ("tracetag.toml", "pyproject.toml")
        ]
    for p in candidates:
        if not p.is_file():
            if path is not None:
                raise InvalidInput(f"{p}: no such config file")
            continue
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise InvalidInput(f"{p}: invalid TOML ({e})") from None
        table = data.get("lint") if p.name != "pyproject.toml" else None
        if table is None:
            table = data.get("tool", {}).get("tracetag", {}).get("lint")
        if table is None:
            if path is not None:
                raise InvalidInput(f"{p}: no [tool.tracetag.lint] or [lint] table")
            continue
        return _config_from(table, str(p))
    return LintConfig()


def _config_from(table: dict[str, Any], source: str) -> LintConfig:
    cfg = LintConfig(source=source)
    unknown = set(table.get("disable", [])) - set(RULES)
    if unknown:
        raise InvalidInput(
            f"{source}: unknown lint rules {sorted(unknown)}; rules are {', '.join(RULES)}"
        )
    cfg.disable = set(table.get("disable", []))
    cfg.ignore_keys = list(table.get("ignore_keys", cfg.ignore_keys))
    cfg.key_abbreviations.update(table.get("abbreviations", {}))
    cfg.value_abbreviations.update(table.get("value_abbreviations", {}))
    cfg.synonyms.update(table.get("synonyms", {}))
    return cfg


@dataclass
class Finding:
    rule: str
    key: str
    traces: int
    suggestion: str
    value: str | None = None
    rename_to: str | None = None  # fix: rename key -> this
    value_to: str | None = None  # fix: value -> this (for ``key``'s concept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "key": self.key,
            "value": self.value,
            "traces": self.traces,
            "suggestion": self.suggestion,
            "fix": (
                {"rename_to": self.rename_to}
                if self.rename_to
                else {"value_to": self.value_to}
                if self.value_to is not None
                else None
            ),
        }


def _words(segment: str) -> list[str]:
    return [w for w in re.split(r"[_\-\s]+", _CAMEL.sub("_", segment)) if w]


def _expand(words: list[str], cfg: LintConfig) -> list[str]:
    """Abbreviations replaced by their expansions, except where the expansion is already
    written out (``stage`` -> ``processing_stage`` leaves ``processing_stage`` alone)."""
    expansions = {a: _words(e.lower().replace(".", "_")) for a, e in cfg.key_abbreviations.items()}
    out: list[str] = []
    i = 0
    while i < len(words):
        for full in sorted(expansions.values(), key=len, reverse=True):
            if len(full) > 1 and words[i : i + len(full)] == full:
                out += full
                i += len(full)
                break
        else:
            out += expansions.get(words[i], [words[i]])
            i += 1
    return out


def _normalise_once(key: str, cfg: LintConfig) -> str:
    parts = []
    for segment in key.split("."):
        words = _expand([w.lower() for w in _words(segment)], cfg)
        parts.append("_".join(words))
    return ".".join(p for p in parts if p) or key


def normalise_key(key: str, cfg: LintConfig) -> str:
    """The spelling the guidelines ask for: lowercase words, underscores, full words, dots kept.

    Idempotent by construction (a fixpoint): the spelling it returns is one it leaves alone,
    so ``lint --fix`` run twice changes nothing the second time. A configuration whose
    expansions never settle leaves the key as it is.
    """
    current = key
    for _ in range(8):
        following = _normalise_once(current, cfg)
        if following == current:
            return current
        current = following
    return key


def _style_only(key: str) -> str:
    return ".".join("_".join(w.lower() for w in _words(s)) for s in key.split(".") if s) or key


def _semver(value: str) -> str | None:
    m = _LOOSE_VERSION.match(value.strip())
    if not m:
        return None
    major, minor, patch, extra = m.groups()
    return f"v{major}.{minor or 0}.{patch or 0}{extra or ''}"


def _is_version_key(key: str) -> bool:
    last = key.rsplit(".", 1)[-1].lower()
    return (
        last == "version"
        or last.endswith("_version")
        or last.endswith("version")
        or last.endswith("_ver")
    )


def normalise_value(value: str, cfg: LintConfig) -> str:
    v = value.strip().lower()
    return cfg.value_abbreviations.get(v, v)


@dataclass
class _Census:
    """What lint looks at: each key's trace count and value counts, and its concept (the
    spelling the guidelines ask for; keys with one concept are one thing spelled differently)."""

    traces: Counter[str]
    values: dict[str, Counter[str]]
    concept: dict[str, str]
    groups: dict[str, list[str]]


def _census(
    snapshot: ReadView, cfg: LintConfig, node: A.Node | None, experiment_ids: Any
) -> _Census:
    traces: Counter[str] = Counter()
    values: dict[str, Counter[str]] = defaultdict(Counter)
    for doc in select(snapshot, node, experiment_ids):
        for k, v in doc["tags"].items():
            if not cfg.ignored(k):
                traces[k] += 1
                values[k][v] += 1
    concept = {}
    groups: dict[str, list[str]] = defaultdict(list)
    for k in traces:
        c = normalise_key(k, cfg)
        concept[k] = cfg.synonyms.get(c, c)
        groups[concept[k]].append(k)
    return _Census(traces, values, concept, groups)


def _inconsistent_keys(census: _Census, cfg: LintConfig) -> Iterator[Finding]:
    """Across traces: every spelling of a concept but its own is renamed to it."""
    for c, keys in census.groups.items():
        if len(keys) < 2:
            continue
        spelled = ", ".join(f"{k} ({census.traces[k]})" for k in sorted(keys))
        for k in sorted(keys):
            if k != c:
                hint = f"one concept, {len(keys)} spellings: {spelled}; rename to {c!r}"
                yield Finding("inconsistent-key", k, census.traces[k], hint, rename_to=c)


def _per_key(census: _Census, cfg: LintConfig) -> Iterator[Finding]:
    """The first key rule (abbreviation, key-case, key-style) each key breaks; keys already
    renamed by ``inconsistent-key`` are not reported twice."""
    renamed = cfg.enabled("inconsistent-key")
    for c, keys in census.groups.items():
        for k in keys:
            if renamed and len(keys) > 1 and k != c:
                continue
            target = normalise_key(k, cfg)
            for check in KEY_RULES.values():
                found = check(k, target, census.traces[k], cfg)
                if found is not None:
                    yield found
                    break


def _per_value(census: _Census, cfg: LintConfig) -> Iterator[Finding]:
    """Values are judged per concept, so env=PROD and environment=production meet, and each
    finding names a key and value that really exist, so that it can be searched for."""
    by_concept: dict[str, Counter[str]] = defaultdict(Counter)
    for k, counter in census.values.items():
        by_concept[census.concept[k]].update(counter)
    for c, counter in by_concept.items():
        for vf in _value_findings(c, counter, cfg):
            for k in sorted(census.groups[c]):
                n = census.values[k].get(vf.value or "", 0)
                if n:
                    yield Finding(
                        vf.rule, k, n, vf.suggestion, value=vf.value, value_to=vf.value_to
                    )


def _units(census: _Census, cfg: LintConfig) -> Iterator[Finding]:
    for k, counter in census.values.items():
        if all(_NUMBER.match(v) for v in counter):
            found = _unit_finding(k, census.concept[k], census.traces[k], cfg)
            if found:
                yield found


def lint_store(
    snapshot: ReadView,
    cfg: LintConfig | None = None,
    filter_string: str | None = None,
    experiment_ids: Iterable[str] | None = None,
) -> list[Finding]:
    cfg = cfg or LintConfig()
    census = _census(snapshot, cfg, parse_filter(filter_string), experiment_ids)
    findings = [
        f
        for check in (_inconsistent_keys, _per_key, _per_value, _units)
        for f in check(census, cfg)
        if cfg.enabled(f.rule)
    ]
    order = {r: i for i, r in enumerate(RULES)}
    findings.sort(key=lambda f: (order[f.rule], f.key, f.value or ""))
    return findings


def _abbreviation(key: str, target: str, traces: int, cfg: LintConfig) -> Finding | None:
    words = [w.lower() for s in key.split(".") for w in _words(s)]
    abbreviations = [w for w in words if w in cfg.key_abbreviations]
    if not abbreviations or target == key or not cfg.enabled("abbreviation"):
        return None
    full = ", ".join(f"{w} -> {cfg.key_abbreviations[w]}" for w in abbreviations)
    hint = f"unclear abbreviation ({full}); rename to {target!r}"
    return Finding("abbreviation", key, traces, hint, rename_to=target)


def _key_case(key: str, target: str, traces: int, cfg: LintConfig) -> Finding | None:
    if not any(c.isupper() for c in key) or not cfg.enabled("key-case"):
        return None
    return Finding(
        "key-case", key, traces, f"use lowercase: rename to {target!r}", rename_to=target
    )


def _key_style(key: str, target: str, traces: int, cfg: LintConfig) -> Finding | None:
    if _style_only(key) == key or not cfg.enabled("key-style"):
        return None
    hint = f"join words with '_' (dots for hierarchy): rename to {target!r}"
    return Finding("key-style", key, traces, hint, rename_to=target)


# The per-key rules, in precedence order: a key is reported under the first one it breaks.
KEY_RULES: dict[str, Callable[[str, str, int, LintConfig], Finding | None]] = {
    "abbreviation": _abbreviation,
    "key-case": _key_case,
    "key-style": _key_style,
}


def _versions(key: str, counter: Counter[str]) -> Iterator[Finding]:
    for v, n in sorted(counter.items()):
        if not _SEMVER.match(v):
            fixed = _semver(v)
            example = repr(fixed) if fixed else "'v1.2.3'"
            hint = f"use a semantic version such as {example}"
            yield Finding("version-format", key, n, hint, value=v, value_to=fixed)


def _abbreviated_values(key: str, counter: Counter[str], cfg: LintConfig) -> Iterator[Finding]:
    for v, n in sorted(counter.items()):
        full = cfg.value_abbreviations.get(v.strip().lower())
        if full and full != v:
            hint = f"write the full value {full!r}"
            yield Finding("value-abbreviation", key, n, hint, value=v, value_to=full)


def _inconsistent_values(
    key: str, counter: Counter[str], cfg: LintConfig, reported: set[str]
) -> Iterator[Finding]:
    by_norm: dict[str, list[str]] = defaultdict(list)
    for v in counter:
        by_norm[normalise_value(v, cfg)].append(v)
    for norm, spellings in by_norm.items():
        if len(spellings) < 2:
            continue
        canonical = (
            norm if norm in counter else max(spellings, key=lambda s: (counter[s], s == s.lower()))
        )
        listed = ", ".join(f"{s!r} ({counter[s]})" for s in sorted(spellings))
        for s in sorted(spellings):
            if s == canonical or s in reported:
                continue
            if (
                cfg.enabled("value-abbreviation")
                and cfg.value_abbreviations.get(s.strip().lower()) == s.strip().lower()
            ):
                continue
            hint = f"{len(spellings)} spellings of one value: {listed}; use {canonical!r}"
            yield Finding("inconsistent-value", key, counter[s], hint, value=s, value_to=canonical)


def _value_findings(key: str, counter: Counter[str], cfg: LintConfig) -> list[Finding]:
    """Version keys get version rules only; other keys abbreviations, then spellings."""
    if _is_version_key(key):
        return list(_versions(key, counter)) if cfg.enabled("version-format") else []
    out = list(_abbreviated_values(key, counter, cfg)) if cfg.enabled("value-abbreviation") else []
    if cfg.enabled("inconsistent-value"):
        reported = {f.value or "" for f in out}
        out += _inconsistent_values(key, counter, cfg, reported)
    return out


def _unit_finding(key: str, concept: str, traces: int, cfg: LintConfig) -> Finding | None:
    if not cfg.enabled("numeric-unit"):
        return None
    words = [w.lower() for w in _words(key.rsplit(".", 1)[-1])]
    if not words or words[-1] in UNIT_SUFFIXES:
        return None
    unit = next((MEASURE_WORDS[w] for w in words if w in MEASURE_WORDS), None)
    if unit is None:
        return None
    # Reported, never fixed: only the person who wrote the values knows their unit.
    return Finding(
        "numeric-unit",
        key,
        traces,
        f"numeric values without a unit: name it, e.g. {concept}_{unit} if they are in {unit}",
    )


def check_rules(rules: Iterable[str]) -> list[str]:
    """``rules`` if each is a rule id; else the error names the first unknown one."""
    out = list(rules)
    for r in out:
        if r not in RULES:
            raise InvalidInput(f"unknown lint rule {r!r}; rules: {', '.join(RULES)}")
    return out


def fix_findings(
    client: TracetagClient,
    findings: list[Finding],
    cfg: LintConfig | None = None,
    filter_string: str | None = None,
    experiment_ids: Iterable[str] | None = None,
    dry_run: bool = False,
    rules: Iterable[str] | None = None,
) -> TagReport:
    """Apply the findings' fixes (renames, then value rewrites) in one atomic write.

    ``rules`` limits the fixes to those rules. A rename whose target key already holds a
    different value on a trace is not made on that trace, so nothing is overwritten; such
    traces are listed in the report's ``conflicts`` (and make it not ``ok``).
    """
    cfg = cfg or LintConfig()
    if rules is not None:
        wanted = set(rules)
        unknown = wanted - set(RULES)
        if unknown:
            raise InvalidInput(
                f"unknown lint rule {sorted(unknown)[0]!r}; rules: {', '.join(RULES)}"
            )
        findings = [f for f in findings if f.rule in wanted]
    renames = {f.key: f.rename_to for f in findings if f.rename_to}
    # A value fix found on key k also applies once k is renamed to its concept's spelling.
    value_fixes: dict[tuple[str, str], str] = {}
    for f in findings:
        if f.value_to is not None and f.value is not None:
            value_fixes[(f.key, f.value)] = f.value_to
            value_fixes[(renames.get(f.key) or normalise_key(f.key, cfg), f.value)] = f.value_to
    exps = None if experiment_ids is None else [str(e) for e in experiment_ids]
    selection = Selection(None, parse_filter(filter_string), exps)

    def change(doc: dict) -> TagChange | None:
        tags = doc["tags"]
        new = dict(tags)
        conflicts = []
        for old_key, target in renames.items():
            if old_key in new and target:
                if target in tags and tags[target] != new[old_key]:
                    conflicts.append((old_key, target))
                    continue
                new[target] = new.pop(old_key)
        for k, v in list(new.items()):
            fixed = value_fixes.get((k, v))
            if fixed is not None:
                new[k] = fixed
        if new == tags and not conflicts:
            return None
        sets = {k: v for k, v in new.items() if tags.get(k) != v}
        dels = [k for k in tags if k not in new]
        c = plan_change(doc["trace_id"], tags, sets, dels)
        c.conflicts = conflicts
        return c

    return client.apply_changes(TagPlan(selection, change, dry_run), dry_run=dry_run)
