"""`tracetag ui`, driven by Textual's pilot on real stores: filter errors with a caret, a trace's
spans, marking and tagging in one write the CLI sees, undo, statistics; and screenshots."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("textual", reason="the terminal UI's tests need the ui extra")
from textual.widgets import DataTable, Input, Static, Tree

from tracetag.api import TracetagClient
from tracetag.cli import app as cli_app
from tracetag.review import FilterHistory
from tracetag.ui.app import TracetagApp, shown_order

runner = CliRunner()
FILTER = "tags.environment = 'production'"


def _app(store, tmp_path, **kw):
    history = FilterHistory(tmp_path / "history")
    return TracetagApp(TracetagClient(store), history=history, **kw)


async def _settle(app, pilot):
    for _ in range(3):
        await pilot.pause()
        await app.workers.wait_for_complete()
    await pilot.pause()


def _cli_ids(*args):
    r = runner.invoke(cli_app, ["search", *args, "-o", "ids"])
    assert r.exit_code == 0, r.output
    return r.stdout.split()


def _writes(store):
    """How many writes the store has taken: journal records, or a database's write count."""
    if isinstance(store, Path):
        path = store.with_name(store.name + "-journal")
        return len(path.read_bytes().splitlines()) if path.exists() else 0
    return TracetagClient(store).info()["writes"]


def test_review_flow_filter_select_tag_three_undo(conformance_store, tmp_path):
    """On the file store and on PostgreSQL."""
    store = conformance_store
    app = _app(store, tmp_path)

    async def run():
        async with app.run_test(size=(100, 30)) as pilot:
            await _settle(app, pilot)
            table = app.query_one("#results", DataTable)
            assert table.row_count == 100  # the first page, not all 320
            await pilot.press("ctrl+end")  # near the end of what is read, the next page comes
            await _settle(app, pilot)
            assert table.row_count == 300
            await pilot.press("ctrl+end")
            await _settle(app, pilot)
            assert table.row_count == 320 and app.pager.done
            await pilot.press("ctrl+home")
            # A filter with an error: the caret shows, nothing is searched.
            await pilot.press("slash", *"tags.environment = ")
            await _settle(app, pilot)
            problem = app.query_one("#problem", Static)
            assert not problem.has_class("ok")
            text = str(problem.render())
            assert "unexpected end of filter" in text and "^" in text
            assert app.pager.filter_string is None
            # Fixed: the table fills with what the CLI finds, in the same order.
            await pilot.press(*"'production'", "enter")
            await _settle(app, pilot)
            assert problem.has_class("ok")
            expected = _cli_ids("-f", FILTER)
            assert shown_order(app)[: len(expected)] == expected[:100]
            # Select a trace: its spans appear.
            await pilot.press("down")
            await _settle(app, pilot)
            chosen = expected[1]
            tree = app.query_one("#spans", Tree)
            trace = TracetagClient(store).get_trace(chosen)
            labels = [str(n.label) for n in tree.root.children]
            roots = [s for s in trace.spans if s.parent_id is None]
            assert len(labels) == len(roots) and roots[0].name in labels[0]
            # Mark three, tag them in one write.
            await pilot.press("space", "down", "space", "down", "space")
            assert len(app.marked) == 3
            before = _writes(store)
            await pilot.press("t", *"reviewed=yes")
            await _settle(app, pilot)
            diff = str(app.screen.query_one("#diff", Static).render())
            assert diff.count("+ reviewed=yes") == 3 and "3 traces would change" in diff
            await pilot.press("enter")
            await _settle(app, pilot)
            assert _writes(store) == before + 1
            assert sorted(_cli_ids("-f", "tags.reviewed = 'yes'")) == sorted(expected[1:4])
            # Undo: the CLI sees the tags gone.
            await pilot.press("u")
            await _settle(app, pilot)
            assert _cli_ids("-f", "tags.reviewed = 'yes'") == []

    asyncio.run(run())


def test_mark_all_tags_every_match_not_only_the_loaded_page(local_conformance_store, tmp_path):
    app = _app(local_conformance_store, tmp_path)  # no filter: 320 traces, 200 loaded

    async def run():
        async with app.run_test(size=(100, 30)) as pilot:
            await _settle(app, pilot)
            await pilot.press("a", "t", *"batch=all")
            await _settle(app, pilot)
            await pilot.press("enter")
            await _settle(app, pilot)

    asyncio.run(run())
    assert len(_cli_ids("-f", "tags.batch = 'all'")) == 320


def test_stats_help_sort_and_refresh_see_other_writers(local_conformance_store, tmp_path):
    app = _app(local_conformance_store, tmp_path, filter_string=FILTER)

    async def run():
        async with app.run_test(size=(100, 30)) as pilot:
            await _settle(app, pilot)
            top = shown_order(app)[0]
            # Another process tags the top trace; a refresh shows it.
            r = runner.invoke(cli_app, ["tag", "set", top, "seen_by=cli"])
            assert r.exit_code == 0
            await pilot.press("r")
            await _settle(app, pilot)
            assert "seen_by = cli" in str(app.query_one("#info", Static).render())
            await pilot.press("s")  # slowest first
            await _settle(app, pilot)
            assert shown_order(app)[:5] == _cli_ids(
                "-f", FILTER, "--order-by", "execution_time_ms DESC", "-n", "5"
            )
            await pilot.press("g")
            await _settle(app, pilot)
            stats = app.screen.query_one("#stats", DataTable)
            assert stats.row_count == 2  # OK and ERROR
            await pilot.press("escape", "question_mark")
            await _settle(app, pilot)
            assert "mark every trace that matches" in str(app.screen.query_one("#help").render())

    asyncio.run(run())


def test_hostile_values_are_shown_as_text(store_path, tmp_path):
    client = TracetagClient(store_path)
    import tracetag

    tracetag.set_store(str(store_path))

    @tracetag.trace(name="[bold red]boom\x1b[2J")
    def f():
        tracetag.update_current_trace(tags={"note": "[link=http://evil]x[/link]\x1b]0;t\x07"})

    f()
    tracetag.flush()
    app = _app(store_path, tmp_path)

    async def run():
        async with app.run_test(size=(100, 30)) as pilot:
            await _settle(app, pilot)
            info = str(app.query_one("#info", Static).render())
            assert "[link=http://evil]x[/link]\\x1b]0;t\\x07" in info
            assert "[bold red]boom\\x1b[2J" in info

    asyncio.run(run())
    assert client.search_traces()


def test_filter_history_keeps_recent_filters_once(tmp_path):
    h = FilterHistory(tmp_path / "h")
    for f in ["a = 1", "b = 2", "a = 1", "c\n= 3"]:
        h.add(f)
    assert FilterHistory(tmp_path / "h").recent() == ["c = 3", "a = 1", "b = 2"]


def test_ui_without_textual_is_one_line(monkeypatch):
    import tracetag.ui

    monkeypatch.setattr(tracetag.ui, "available", lambda: False)
    r = runner.invoke(cli_app, ["ui"])
    assert r.exit_code == 2 and "pip install 'tracetag[ui]'" in r.output


# -- screenshots (SVG, under tests/__snapshots__; README shows them) ------------------------------


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
@pytest.mark.parametrize("view", ["main", "tag", "stats", "help"])
def test_screens(local_conformance_store, tmp_path, snap_compare, size, view):
    app = _app(local_conformance_store, tmp_path, filter_string=FILTER, tag_columns=["priority"])
    keys = {
        "main": ["down", "down"],
        "tag": ["space", "down", "space", "t", *"reviewed=yes"],
        "stats": ["g"],
        "help": ["question_mark"],
    }[view]

    async def before(pilot):
        await _settle(app, pilot)
        await pilot.press(*keys)
        for field in app.query(Input):  # a blinking cursor is caught shown or hidden at random
            field.cursor_blink = False
        await _settle(app, pilot)

    assert snap_compare(app, terminal_size=size, run_before=before)


def test_readme_screenshots_are_the_current_snapshots():
    """docs/screenshots (shown in the README) are copies of the snapshots this file checks."""
    root = Path(__file__).resolve().parents[1]
    shots = sorted((root / "docs" / "screenshots").glob("ui-*.svg"))
    assert len(shots) == 6
    for shot in shots:
        view, size = shot.stem.split("-")[1:]
        index = {"80x24": 0, "160x48": 1}[size]
        snap = (
            root / "tests" / "__snapshots__" / "test_ui" / f"test_screens[{view}-size{index}].svg"
        )
        assert shot.read_bytes() == snap.read_bytes(), f"copy {snap.name} to {shot}"
    assert "docs/screenshots/ui-main-160x48.svg" in (root / "README.md").read_text()


def test_shift_select_marks_a_run_and_a_tag_deletes_with_minus(local_conformance_store, tmp_path):
    app = _app(local_conformance_store, tmp_path, filter_string=FILTER)

    async def run():
        async with app.run_test(size=(100, 30)) as pilot:
            await _settle(app, pilot)
            await pilot.press("shift+down", "shift+down", "shift+down")
            order = shown_order(app)
            assert app.marked == set(order[:4])
            await pilot.press("t", *"step=one")
            await _settle(app, pilot)
            await pilot.press("enter")
            await _settle(app, pilot)
            assert sorted(_cli_ids("-f", "tags.step = 'one'")) == sorted(order[:4])
            assert app.marked == set()  # a write clears the marks: no tagging twice by mistake
            assert shown_order(app)[app.query_one("#results", DataTable).cursor_row] == order[3]
            await pilot.press("space", "t", *"-step")  # the highlighted trace, where it was
            await _settle(app, pilot)
            await pilot.press("enter")
            await _settle(app, pilot)
            return order

    order = asyncio.run(run())
    assert sorted(_cli_ids("-f", "tags.step = 'one'")) == sorted(order[:3])


def test_reading_on_every_backend(readonly_store, tmp_path):
    """The file store, PostgreSQL and an MLflow server: the same rows, the same spans."""
    app = _app(readonly_store, tmp_path, filter_string=FILTER, order_by=["execution_time_ms DESC"])

    async def run():
        async with app.run_test(size=(100, 30)) as pilot:
            await _settle(app, pilot)
            shown = shown_order(app)
            await pilot.press("down")
            await _settle(app, pilot)
            return shown, [str(n.label) for n in app.query_one("#spans", Tree).root.children]

    shown, labels = asyncio.run(run())
    expected = _cli_ids("-f", FILTER, "--order-by", "execution_time_ms DESC")
    assert shown == expected[:100]
    trace = TracetagClient(readonly_store).get_trace(expected[1])
    assert next(s.name for s in trace.spans if s.parent_id is None) in labels[0]


def test_a_bad_start_filter_is_one_line_with_a_caret_before_any_screen():
    r = runner.invoke(cli_app, ["ui", "-f", "tags.x = "])
    assert r.exit_code == 2
    assert "unexpected end of filter" in r.output and r.output.rstrip().endswith("^")


def test_an_empty_store_shows_nothing_and_no_key_fails(store_path, tmp_path):
    TracetagClient(store_path).create_experiment("empty")
    app = _app(store_path, tmp_path)

    async def run():
        async with app.run_test(size=(80, 24)) as pilot:
            await _settle(app, pilot)
            for key in ("space", "shift+down", "a", "t", "escape", "u", "s", "r", "z", "z"):
                await pilot.press(key)
                await _settle(app, pilot)
            await pilot.press("g")
            await _settle(app, pilot)
            assert app.screen.query_one("#stats", DataTable).row_count == 0
            await pilot.press("escape")
            await _settle(app, pilot)
            return app.query_one("#results", DataTable).row_count, app.sub_title

    assert asyncio.run(run()) == (0, "0 traces, 0 marked")  # a new search clears the marks


def test_a_click_on_a_column_header_sorts_by_it_and_again_reverses(
    local_conformance_store, tmp_path
):
    app = _app(local_conformance_store, tmp_path, filter_string=FILTER)

    async def run():
        async with app.run_test(size=(120, 30)) as pilot:
            await _settle(app, pilot)
            table = app.query_one("#results", DataTable)
            x = sum(c.get_render_width(table) for c in list(table.columns.values())[:3]) + 2
            orders = []
            for _ in range(2):
                await pilot.click("#results", offset=(x, 0))  # the duration column's header
                await _settle(app, pilot)
                orders.append((app.pager.order_by, shown_order(app)[:5]))
            return orders

    (first, down), (second, up) = asyncio.run(run())
    assert first == ["execution_time_ms DESC"] and second == ["execution_time_ms ASC"]
    assert down == _cli_ids("-f", FILTER, "--order-by", "execution_time_ms DESC", "-n", "5")
    assert up == _cli_ids("-f", FILTER, "--order-by", "execution_time_ms ASC", "-n", "5")


def test_enter_then_a_mark_survives_the_pause_search(local_conformance_store, tmp_path):
    """A filter typed and submitted with Enter is searched once: the search the pause after
    typing would start does not clear the rows (and the marks) made meanwhile."""
    app = _app(local_conformance_store, tmp_path)

    async def run():
        async with app.run_test(size=(120, 40)) as pilot:
            await _settle(app, pilot)
            await pilot.press("slash", *"status = 'OK'", "enter")
            await _settle(app, pilot)
            await pilot.press("space")  # mark the first row
            assert len(app.marked) == 1
            app._search_if_current("status = 'OK'")  # what the pause's timer then does
            await _settle(app, pilot)
            assert len(app.marked) == 1

    asyncio.run(run())
