"""The naming-guidelines linter: every rule, configuration, and a --fix round trip."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracetag.api import TracetagClient
from tracetag.lint import RULES, LintConfig, fix_findings, lint_store, load_config, normalise_key
from tracetag.model import Trace, TraceInfo
from tracetag.store import Store

TAGSETS = [
    {"environment": "production", "model_version": "v2.1.0", "tier": "gold"},
    {"environment": "production", "model_version": "v2.1.0", "tier": "Gold"},
    {"env": "staging", "ModelVer": "2.1", "tier": "GOLD"},
    {"environment": "PROD", "model_version": "v1.0.0", "latency": "350", "retries": "3"},
    {"UserSegment": "premium", "review status": "done", "usr_plan": "pro", "mlflow.traceName": "x"},
]


@pytest.fixture
def messy(client: TracetagClient):
    client.log_traces(
        [
            Trace(TraceInfo(trace_id=f"tr-{i:032x}", timestamp_ms=i, tags=tags))
            for i, tags in enumerate(TAGSETS)
        ]
    )
    return client


def findings_by_rule(client):
    with client.snapshot() as snap:
        found = lint_store(snap)
    out: dict[str, list] = {}
    for f in found:
        out.setdefault(f.rule, []).append((f.key, f.value, f.traces, f.rename_to or f.value_to))
    return out


def test_every_rule_fires(messy):
    got = findings_by_rule(messy)
    assert set(got) == set(RULES)
    assert got["key-case"] == [("UserSegment", None, 1, "user_segment")]
    assert got["key-style"] == [("review status", None, 1, "review_status")]
    assert got["abbreviation"] == [("usr_plan", None, 1, "user_plan")]
    # the real key and value ("ModelVer=2.1"), not the concept's spelling
    assert got["version-format"] == [("ModelVer", "2.1", 1, "v2.1.0")]
    assert got["numeric-unit"] == [("latency", None, 1, None)]  # reported, never renamed
    assert got["value-abbreviation"] == [("environment", "PROD", 1, "production")]
    assert sorted(got["inconsistent-key"]) == [
        ("ModelVer", None, 1, "model_version"),
        ("env", None, 1, "environment"),
    ]
    assert sorted(got["inconsistent-value"]) == [
        ("tier", "GOLD", 1, "gold"),
        ("tier", "Gold", 1, "gold"),
    ]


def test_mlflow_keys_are_ignored(messy):
    with messy.snapshot() as snap:
        assert not any(f.key.startswith("mlflow.") for f in lint_store(snap))


def test_cli_exit_codes_and_json(messy, cli):
    result = cli("lint", "-o", "json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert {"rule", "key", "value", "traces", "suggestion", "fix"} <= set(data[0])
    clean = TracetagClient(messy.store.path.with_name("clean.json"))
    clean.log_traces(
        [Trace(TraceInfo(trace_id="tr-" + "1" * 32, tags={"environment": "production"}))]
    )
    ok = cli("--store", str(clean.store.path), "lint")
    assert ok.exit_code == 0 and "no findings" in ok.stderr


def test_fix_dry_run_then_fix_round_trip(messy, cli):
    journal = messy.store.journal_path
    before = journal.read_bytes()
    dry = cli("lint", "--fix", "--dry-run")
    assert dry.exit_code == 1
    assert "tr-00000000000000000000000000000002  + environment=staging" in dry.stdout
    assert "tr-00000000000000000000000000000002  - env (was staging)" in dry.stdout
    assert journal.read_bytes() == before
    store = Store(messy.store.path)
    with store.snapshot() as snap:
        findings = lint_store(snap)
    report = fix_findings(TracetagClient(store), findings)
    assert store.writes == 1 and len(report.changed) == 4  # trace 0 was already clean
    tags = {t.info.trace_id[-1]: t.info.tags for t in TracetagClient(store.path).search_traces()}
    assert tags["2"] == {"environment": "staging", "model_version": "v2.1.0", "tier": "gold"}
    assert tags["3"] == {
        "environment": "production",
        "model_version": "v1.0.0",
        "latency": "350",  # a unit is never guessed
        "retries": "3",
    }
    assert tags["4"] == {
        "user_segment": "premium",
        "review_status": "done",
        "user_plan": "pro",
        "mlflow.traceName": "x",
    }
    assert tags["1"]["tier"] == "gold"
    after = cli("lint", "-o", "json")
    assert after.exit_code == 1 and [f["rule"] for f in json.loads(after.stdout)] == [
        "numeric-unit"
    ]


def test_cli_fix_applies_and_exits_zero(messy, cli):
    result = cli("lint", "--fix")
    assert result.exit_code == 0
    assert "4 traces changed" in result.stderr
    assert "tr-00000000000000000000000000000003  ~ environment: PROD -> production" in result.stdout
    assert cli("lint", "--disable", "numeric-unit").exit_code == 0
    again = cli("lint", "--fix")
    assert "0 traces changed" in again.stderr  # a second --fix changes nothing


def test_findings_name_pairs_that_exist(client, cli):
    client.log_traces(
        [
            Trace(TraceInfo(trace_id="tr-a", tags={"env": "PROD"})),
            Trace(TraceInfo(trace_id="tr-b", tags={"environment": "production"})),
        ]
    )
    with client.snapshot() as snap:
        found = [(f.rule, f.key, f.value) for f in lint_store(snap) if f.value]
    assert found == [("value-abbreviation", "env", "PROD")]
    assert len(cli("search", "-f", "tags.env = 'PROD'", "-o", "ids").stdout.split()) == 1


def test_fix_for_chosen_rules_only(messy, cli):
    result = cli("lint", "--fix", "--rule", "inconsistent-value", "--dry-run")
    assert "~ tier: Gold -> gold" in result.stdout and "environment=staging" not in result.stdout
    bad = cli("lint", "--fix", "--rule", "nope")
    assert bad.exit_code == 2 and "unknown lint rule 'nope'" in bad.stderr


def test_a_skipped_rename_is_reported_and_fails(client, cli):
    client.log_traces(
        [Trace(TraceInfo(trace_id="tr-a", tags={"env": "staging", "environment": "production"}))]
    )
    result = cli("lint", "--fix")
    assert result.exit_code == 1
    assert "not renamed 'env' -> 'environment'" in result.stderr
    assert "1 renames skipped" in result.stderr


def test_the_reference_pages_examples(client):
    """The guidelines' "Good" examples pass; their "Avoid" examples are each caught."""
    good = [
        {
            "environment": "production",
            "model_version": "v2.1.0",
            "user_segment": "premium",
            "processing_stage": "preprocessing",
        },
        {
            "service.name": "chat_api",
            "service.version": "1.2.0",
            "service.region": "us-east-1",
            "user.segment": "enterprise",
            "user.plan": "premium",
            "request.type": "completion",
            "request.priority": "high",
        },
    ]
    avoid = {"env": "PROD", "ModelVer": "2.1", "user_type": "premium", "stage": "pre"}
    client.log_traces([Trace(TraceInfo(trace_id=f"tr-{i}", tags=t)) for i, t in enumerate(good)])
    with client.snapshot() as snap:
        assert lint_store(snap) == []
    client.log_traces([Trace(TraceInfo(trace_id="tr-avoid", tags=avoid))])
    with client.snapshot() as snap:
        keys = {f.key for f in lint_store(snap)}
    assert set(avoid) <= keys


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["stage", "env", "ver", "proc", "x", "usr"]),
        st.sampled_from(
            ["processing_stage", "environment", "version", "processing", "x_y", "user.name"]
        ),
        max_size=4,
    ),
    st.lists(
        st.sampled_from(
            ["stage", "processing_stage", "env", "EnvVer", "usr_proc", "x.stage", "ver_x"]
        ),
        min_size=1,
        max_size=4,
        unique=True,
    ),
)
def test_fix_is_idempotent_for_any_abbreviations(tmp_path_factory, abbreviations, keys):
    cfg = LintConfig()
    cfg.key_abbreviations.update(abbreviations)
    for k in keys:
        once = normalise_key(k, cfg)
        assert normalise_key(once, cfg) == once
    client = TracetagClient(tmp_path_factory.mktemp("s") / "store.json")
    client.log_traces(
        [Trace(TraceInfo(trace_id=f"tr-{i}", tags={k: "v"})) for i, k in enumerate(keys)]
    )
    with client.snapshot() as snap:
        fix_findings(client, lint_store(snap, cfg), cfg)
    with client.snapshot() as snap:
        second = fix_findings(client, lint_store(snap, cfg), cfg)
    assert second.changed == []


def test_rename_never_overwrites_a_different_value(client):
    client.log_traces(
        [
            Trace(
                TraceInfo(
                    trace_id="tr-" + "a" * 32, tags={"env": "dev", "environment": "production"}
                )
            )
        ]
    )
    with client.snapshot() as snap:
        findings = lint_store(snap)
    fix_findings(client, findings)
    tags = client.get_trace("tr-" + "a" * 32).info.tags
    # The conflicting rename is skipped (both keys stay); the value is still normalised.
    assert tags == {"environment": "production", "env": "development"}


def test_config_disables_rules(messy, tmp_path, cli, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.tracetag.lint]\ndisable = ["numeric-unit", "key-style"]\n'
    )
    cfg = load_config(start=tmp_path)
    assert cfg.disable == {"numeric-unit", "key-style"}
    with messy.snapshot() as snap:
        rules = {f.rule for f in lint_store(snap, cfg)}
    assert "numeric-unit" not in rules and "key-style" not in rules and "key-case" in rules
    (tmp_path / "tracetag.toml").write_text(
        '[lint]\ndisable = ["inconsistent-value"]\nignore_keys = ["mlflow.*", "tier"]\n'
    )
    monkeypatch.chdir(tmp_path)
    data = json.loads(cli("lint", "-o", "json").stdout)
    assert not any(f["key"] == "tier" for f in data)
    assert not any(f["rule"] == "inconsistent-value" for f in data)
    (tmp_path / "bad.toml").write_text('[lint]\ndisable = ["no-such-rule"]\n')
    bad = cli("lint", "--config", str(tmp_path / "bad.toml"))
    assert bad.exit_code == 2 and "unknown lint rules ['no-such-rule']" in bad.stderr


def test_synonyms_are_one_concept_only_when_both_are_used(client, tmp_path):
    client.log_traces(
        [
            Trace(TraceInfo(trace_id="tr-" + "1" * 32, tags={"user_segment": "premium"})),
            Trace(TraceInfo(trace_id="tr-" + "2" * 32, tags={"user_type": "premium"})),
        ]
    )
    with client.snapshot() as snap:
        found = [(f.rule, f.key, f.rename_to) for f in lint_store(snap)]
    assert found == [("inconsistent-key", "user_type", "user_segment")]
    client.delete_traces(trace_ids=["tr-" + "1" * 32])
    with client.snapshot() as snap:
        assert lint_store(snap) == []  # one word used consistently is fine
    (tmp_path / "tracetag.toml").write_text('[lint]\nsynonyms = { user_type = "customer_tier" }\n')
    client.log_traces([Trace(TraceInfo(trace_id="tr-" + "3" * 32, tags={"customer_tier": "gold"}))])
    with client.snapshot() as snap:
        found = [(f.key, f.rename_to) for f in lint_store(snap, load_config(start=tmp_path))]
    assert found == [("user_type", "customer_tier")]


def test_default_config_when_nothing_found(tmp_path):
    assert load_config(start=tmp_path).disable == LintConfig().disable == set()
