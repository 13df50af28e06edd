"""Sample traces of a small LLM application, recorded through the tracing API.

Each trace is a request to a chat or RAG service: a root span with retrieval, an optional
rerank or tool call, and an LLM call, with the tags the reference guidelines recommend
(environment, model_version, user_id, session_id, ...). Some requests fail and some are slow,
so searches, stats and lint have something to find. Times are simulated (spread over the last
week, ending now) and given to the spans explicitly, so recording takes well under a second.
"""

from __future__ import annotations

import random
import time
from typing import Any

from . import runtime, tracing
from .api import TracetagClient
from .fluent import set_experiment

__all__ = ["record_demo"]

QUESTIONS = [
    "How do I reset my password?",
    "Summarise the Q3 incident report",
    "What is our refund policy for annual plans?",
    "Translate the onboarding email to German",
    "Which regions support GPU instances?",
    "Draft a reply to the customer about the outage",
    "Explain the difference between v1 and v2 of the API",
    "List the open tickets for ACME Corp",
]
MODELS = {"v1.0.0": ("gpt-4o-mini", 900), "v2.0.0": ("gpt-4o", 1400), "v2.1.0": ("gpt-4.1", 1100)}


def _request(rng: random.Random) -> dict[str, Any]:
    """Who asks what, where, and how it will go (the random draws of one request)."""
    env = rng.choices(["production", "staging", "development"], [60, 25, 15])[0]
    version = rng.choices(list(MODELS), [25, 40, 35])[0]
    kind = rng.choices(["chat_completion", "rag_query", "summarize"], [45, 40, 15])[0]
    question = rng.choice(QUESTIONS)
    user = f"user_{rng.randint(1, 40):03d}"
    slow = rng.random() < 0.1
    # Slow requests time out more often, so the tour's "slow production errors" exist.
    fails = rng.random() < (0.45 if slow else 0.12 if env == "development" else 0.06)
    retries = rng.choices([0, 1, 2, 3, 4, 5], [70, 12, 8, 5, 3, 2])[0] + (2 if fails else 0)
    tags = {
        "environment": env,
        "model_version": version,
        "user_id": user,
        "session_id": f"session_{rng.randint(1, 120):03d}",
        "request_type": kind,
        "priority": "high" if rng.random() < 0.2 else "normal",
        "experiment_variant": rng.choice(["control", "treatment"]),
        "sla_tier": rng.choices(["standard", "premium", "critical"], [70, 25, 5])[0],
        "retries": str(retries),
    }
    if rng.random() < 0.04:
        # An old client that predates the naming guidelines: what `tracetag lint` is for.
        tags["env"] = {"production": "PROD", "staging": "stg", "development": "dev"}[
            tags.pop("environment")
        ]
        tags["ModelVer"] = tags.pop("model_version")[1:4]
    return {
        "version": version,
        "kind": kind,
        "question": question,
        "user": user,
        "slow": slow,
        "fails": fails,
        "tags": tags,
    }


def _child(root: Any, name: str, kind: str, inputs: Any, outputs: Any, t: int, ms: int) -> int:
    span = tracing.start_span_no_context(name, kind, root, inputs=inputs, start_time_ns=t)
    span.set_outputs(outputs)
    span.end(t + ms * 1_000_000)
    return t + ms * 1_000_000


def _tools(rng: random.Random, root: Any, req: dict[str, Any], t: int) -> int:
    """Retrieval (RAG and summaries) and sometimes an account lookup; returns the time after."""
    if req["kind"] != "chat_completion":
        ms = rng.randint(40, 400)
        docs = [
            {"doc_id": f"kb-{rng.randint(1, 999)}", "score": round(rng.random(), 3)}
            for _ in range(3)
        ]
        t = _child(root, "retrieve_documents", "RETRIEVER", {"query": req["question"]}, docs, t, ms)
    if rng.random() < 0.3:
        plan = {"plan": rng.choice(["free", "pro", "enterprise"])}
        ms = rng.randint(20, 200)
        t = _child(root, "lookup_account", "TOOL", {"user_id": req["user"]}, plan, t, ms)
    return t


def _llm(rng: random.Random, root: Any, req: dict[str, Any], t: int) -> int:
    """The model call: a slow one, a failure, or an answer; returns the time after."""
    model, base_ms = MODELS[req["version"]]
    ms = int(rng.lognormvariate(0, 0.45) * base_ms)
    ms += rng.randint(5000, 14000) if req["slow"] else 0
    messages = [{"role": "user", "content": req["question"]}]
    llm = tracing.start_span_no_context(
        "llm_call",
        "LLM",
        root,
        inputs={"model": model, "messages": messages},
        attributes={"model": model, "temperature": 0.2},
        start_time_ns=t,
    )
    t += ms * 1_000_000
    if req["fails"]:
        choices = ["RateLimitError: 429 Too Many Requests", "TimeoutError: upstream timed out"]
        error = choices[1] if req["slow"] else rng.choice(choices)
        llm.record_exception(RuntimeError(error))
        root.set_status("ERROR", error)
    else:
        answer = f"Here is what I found about: {req['question'].lower()}"
        tokens = rng.randint(80, 900)
        llm.set_outputs({"content": answer, "usage": {"completion_tokens": tokens}})
        llm.set_attribute("completion_tokens", tokens)
        root.set_outputs({"answer": answer})
    llm.end(t)
    return t


def _one(client: TracetagClient, rng: random.Random, start_ns: int, experiment_id: str) -> None:
    req = _request(rng)
    root = tracing.start_span_no_context(
        req["kind"],
        span_type="CHAIN",
        inputs={"question": req["question"], "user_id": req["user"]},
        tags=req["tags"],
        metadata={"app_version": rng.choice(["1.2.3", "1.3.0"])},
        experiment_id=experiment_id,
        start_time_ns=start_ns,
    )
    t = _tools(rng, root, req, start_ns + rng.randint(1, 5) * 1_000_000)
    t = _llm(rng, root, req, t)
    if req["slow"]:
        # Tagging a trace by id while it is still running, as an operator's hook would.
        client.set_trace_tag(root.trace_id, "latency_tier", "slow")
    root.end(t + rng.randint(1, 10) * 1_000_000)


def record_demo(client: TracetagClient, traces: int = 200, seed: int = 7) -> tuple[int, dict]:
    """Record ``traces`` sample traces into the experiment ``demo`` of ``client``'s store."""
    rng = random.Random(seed)
    # A database's ``path`` is shown without its password; ``url`` is how to reach it.
    with runtime.using_store(getattr(client.store, "url", client.store.path)):
        experiment = set_experiment("demo")
        now_ns = time.time_ns()
        week_ns = 7 * 24 * 3600 * 1_000_000_000
        starts = sorted(now_ns - rng.randint(60_000_000_000, week_ns) for _ in range(traces))
        for start in starts:
            _one(client, rng, start, experiment["experiment_id"])
    return traces, experiment
