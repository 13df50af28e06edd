"""``tracetag store info | check | repair``: what is in the store, what is wrong, what can be saved.

``check`` only reads. ``repair`` takes the write lock, copies every file of the store into a
backup folder first, then rebuilds the base from every document and journal record that is
still readable, and says what it dropped.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import NotAStore, StoreError
from ..filters.spans import SPAN_KINDS
from . import idindex
from .base import BaseFile, foreign_kind, new_meta
from .files import decode_record
from .journal import Overlay
from .paths import orphan_files
from .snapshot import read_spans_at

# What a document keeps about its spans: dropped together when the spans are lost.
SPAN_POINTERS = frozenset({"spans_at", SPAN_KINDS})

if TYPE_CHECKING:
    from .local import Store

__all__ = ["CheckReport", "check", "info", "repair"]

_DOC_LINE = re.compile(rb'^"([^"\n]+)": (\{.*\}),?$')


def info(store: Store) -> dict[str, Any]:
    def size(p: os.PathLike[str]) -> int:
        try:
            return os.path.getsize(p)
        except OSError:
            return 0

    with store.snapshot() as snap:
        traces = len(snap.ids())
        generation = snap.base.generation
        records = snap.overlay.records
        spans = snap.spans_path
        indexes = idindex.state(snap.base, store.id_index_min_bytes, whole=False)
    return {
        "store": str(store.path),
        "traces": traces,
        "generation": generation,
        "base_bytes": size(store.path),
        "journal_bytes": size(store.journal_path),
        "journal_records": records,
        "spans_file": str(spans),
        "spans_bytes": size(spans),
        "indexes": indexes,
        "index_bytes": idindex.index_bytes(store.path),
    }


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "errors": self.errors, "warnings": self.warnings, **self.facts}

    def lines(self) -> list[str]:
        out = [f"{k}: {v}" for k, v in self.facts.items()]
        out += [f"warning: {w}" for w in self.warnings]
        out += [f"error: {e}" for e in self.errors]
        out.append("ok" if self.ok else "damaged: run 'tracetag store repair' (it keeps a backup)")
        return out


def _scan_journal(
    store: Store, report: CheckReport | None, header: dict | None = None
) -> tuple[int | None, list[dict], int, int]:
    """(generation, readable records, damaged records, torn tail bytes) of the journal."""
    try:
        data = store.journal_path.read_bytes()
    except FileNotFoundError:
        return None, [], 0, 0
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: a torn write, or b""
    generation = None
    records: list[dict] = []
    damaged = 0
    for n, line in enumerate(lines):
        try:
            rec = decode_record(line)
        except ValueError as e:
            damaged += 1
            if report is not None:
                report.errors.append(f"{store.journal_path}: record {n} is damaged ({e})")
            continue
        if n == 0 and "generation" in rec and "op" not in rec:
            generation = int(rec["generation"])
            if header is not None:
                header.update(rec)
        else:
            records.append(rec)
    return generation, records, damaged, len(tail)


def _scan_base(store: Store, report: CheckReport | None) -> tuple[dict, dict, dict[str, dict], int]:
    """(meta, experiments, readable documents, unreadable lines) of the base file."""
    try:
        base = BaseFile(store.path)
        try:
            found = {tid: orjson.loads(raw) for tid, raw in base.iter_raw()}
            return base.meta, base.experiments, found, 0
        finally:
            base.close()
    except (StoreError, orjson.JSONDecodeError) as e:
        if report is not None:
            report.errors.append(str(e))
    # Line by line, keeping every document that still parses.
    meta, bad = new_meta(0), 0
    experiments: dict[str, dict] = {}
    docs: dict[str, dict] = {}
    try:
        data = store.path.read_bytes()
    except OSError:
        return meta, experiments, docs, 0
    for line in data.split(b"\n"):
        if line.startswith(b'{"_meta": '):
            try:
                meta = orjson.loads(line[len(b'{"_meta": ') :].rstrip(b",")).get("1", meta)
            except (orjson.JSONDecodeError, AttributeError):
                bad += 1
            continue
        if line.startswith(b'"experiments": '):
            try:
                experiments = orjson.loads(line[len(b'"experiments": ') :].rstrip(b","))
            except orjson.JSONDecodeError:
                bad += 1
            continue
        m = _DOC_LINE.match(line)
        if m:
            try:
                docs[m.group(1).decode()] = orjson.loads(m.group(2))
            except orjson.JSONDecodeError:
                bad += 1
        elif line.strip() not in (b"", b'"traces": {', b"}}", b"}"):
            bad += 1
    return meta, experiments, docs, bad


class _Spans:
    """Checks span pointers against the span file a base points into, counting live bytes."""

    def __init__(self, store: Store, meta: dict):
        self.path = store.spans_path_for(meta)
        self.live = 0
        try:
            self.fh: Any = open(self.path, "rb")  # noqa: SIM115 - closed in close()
            self.size = os.fstat(self.fh.fileno()).st_size
        except OSError:
            self.fh, self.size = None, 0

    def readable(self, doc: dict) -> bool:
        try:
            read_spans_at(self.path, doc, self.fh)
        except StoreError:
            return False
        self.live += doc["spans_at"][1]
        return True

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def check(store: Store) -> CheckReport:
    """Read every file of the store; errors for damage, warnings for what is harmless."""
    report = CheckReport()
    report.facts["store"] = str(store.path)
    if not store.path.exists():
        report.facts["traces"] = 0
        report.warnings.append("the store does not exist yet (it is created on the first write)")
        return report
    meta, _exps, docs, bad = _scan_base(store, report)
    if bad:
        report.errors.append(f"{store.path}: {bad} unreadable lines")
    records = _check_journal(store, report, meta)
    overlay = Overlay()
    for rec in records:
        try:
            overlay.apply(rec)
        except (ValueError, KeyError, TypeError) as e:
            report.errors.append(f"{store.journal_path}: unusable record ({e})")
    live = {tid: overlay.merge(d) for tid, d in docs.items() if tid not in overlay.deleted}
    merged = live | dict(overlay.puts.items())
    report.facts["traces"] = len(merged)
    _check_spans(store, report, meta, merged)
    base = BaseFile(store.path)
    try:
        report.facts["id_index"] = idindex.state(base, store.id_index_min_bytes)
    finally:
        base.close()
    return report


def _check_journal(store: Store, report: CheckReport, meta: dict) -> list[dict]:
    """The journal's records, with its header checked against the base it belongs to."""
    header: dict = {}
    generation, records, _damaged, torn = _scan_journal(store, report, header)
    if generation == meta.get("generation") and header.get("base_crc") is not None:
        data = store.path.read_bytes()
        if len(data) != header.get("base_size") or zlib.crc32(data) != header["base_crc"]:
            report.errors.append(
                f"{store.path}: content differs from what was written "
                f"(size {len(data)}, expected {header.get('base_size')}; checksum mismatch)"
            )
    report.facts["generation"] = meta.get("generation")
    report.facts["journal_records"] = len(records)
    if torn:
        report.warnings.append(
            f"{store.journal_path}: {torn} bytes of an unfinished write at the end "
            "(never acknowledged; ignored, and cut off by the next write)"
        )
    if generation is not None and generation != meta.get("generation"):
        report.warnings.append(
            f"{store.journal_path}: generation {generation} is not the base's "
            f"{meta.get('generation')} (left by an interrupted compaction; ignored)"
        )
    return records


def _check_spans(store: Store, report: CheckReport, meta: dict, merged: dict) -> None:
    """Every span pointer readable; dead bytes and leftover files reported."""
    spans = _Spans(store, meta)
    try:
        unreadable = [t for t, d in merged.items() if d.get("spans_at") and not spans.readable(d)]
    finally:
        spans.close()
    if unreadable:
        report.errors.append(f"{spans.path}: spans of {len(unreadable)} traces unreadable")
    dead = spans.size - spans.live
    report.facts["spans_dead_bytes"] = dead
    orphans = orphan_files(store.path, spans.path)
    if orphans:
        size = sum(p.stat().st_size for p in orphans if p.exists())
        report.warnings.append(
            f"{len(orphans)} files left by interrupted compactions or imports ({size} bytes): "
            + ", ".join(p.name for p in orphans)
            + "; the next compaction removes them ('tracetag store compact')"
        )
    if dead > max(1 << 20, spans.size // 2):
        report.warnings.append(
            f"{spans.path}: {dead} of {spans.size} bytes belong to replaced or unfinished "
            "traces; 'tracetag store compact --vacuum' reclaims them"
        )


def repair(store: Store) -> dict[str, Any]:
    """Back up every file, then rebuild base and journal from what is readable."""
    try:
        with open(store.path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        head = b""
    foreign = foreign_kind(head)
    if foreign:
        # Never "repair" somebody else's file into an empty store.
        raise NotAStore(f"{store.path}: {foreign}; nothing was changed")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    backup = store.path.with_name(f"{store.path.name}-backup-{stamp}")
    with store.exclusive():
        backup.mkdir(mode=0o700, parents=True, exist_ok=False)
        meta, experiments, docs, bad = _scan_base(store, None)
        for p in (store.path, store.journal_path, store.spans_path_for(meta)):
            if p.exists():
                shutil.copy2(p, backup / p.name)
        generation, records, damaged, torn = _scan_journal(store, None)
        overlay = Overlay()
        unusable = 0
        if generation is None or generation == meta.get("generation"):
            for rec in records:
                try:
                    overlay.apply(rec)
                except (ValueError, KeyError, TypeError):
                    unusable += 1
        merged = {tid: overlay.merge(d) for tid, d in docs.items() if tid not in overlay.deleted}
        merged.update(overlay.puts.items())
        lost_spans = 0
        spans = _Spans(store, meta)
        try:
            for tid, d in list(merged.items()):
                if d.get("spans_at") and not spans.readable(d):
                    merged[tid] = {k: v for k, v in d.items() if k not in SPAN_POINTERS}
                    lost_spans += 1
        finally:
            spans.close()
        new_gen = int(meta.get("generation") or 0) + 1
        fresh_meta = {**new_meta(new_gen), "spans_file": meta.get("spans_file")}
        items = ((tid, orjson.dumps(d)) for tid, d in merged.items())
        store.install_base(fresh_meta, {**experiments, **overlay.experiments}, items)
    return {
        "backup": str(backup),
        "traces": len(merged),
        "unreadable_base_lines_dropped": bad,
        "damaged_journal_records_dropped": damaged + unusable,
        "unfinished_write_bytes_dropped": torn,
        "traces_whose_spans_were_lost": lost_spans,
    }
