"""``tracetag serve``: an OTLP/HTTP receiver writing into the store."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..errors import ExperimentNotFound, InvalidInput
from .app import LabelsOpt, _state, app, long_lived

HostOpt = Annotated[
    str,
    typer.Option(
        "--host", metavar="ADDRESS", help="Address to listen on; 0.0.0.0 opens it to others."
    ),
]
PortOpt = Annotated[
    int, typer.Option("--port", "-p", metavar="PORT", help="Port (0: any free one).")
]
ServeExperimentOpt = Annotated[
    str,
    typer.Option(
        "--experiment",
        "-x",
        metavar="NAME|ID",
        help="Where received traces go (a new name makes an experiment).",
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        envvar="TRACETAG_RECEIVER_TOKEN",
        help="Require 'Authorization: Bearer TOKEN' (better given in the environment).",
        show_default=False,
    ),
]
MaxBodyOpt = Annotated[
    int, typer.Option("--max-body", metavar="MIB", help="Largest request, after decompression.")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="A line per request.")]


@app.command()
def serve(
    ctx: typer.Context,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 4318,
    experiment: ServeExperimentOpt = "0",
    labels: LabelsOpt = "tag",
    token: TokenOpt = None,
    max_body: MaxBodyOpt = 20,
    verbose: VerboseOpt = False,
) -> None:
    """Receive traces over OTLP/HTTP (POST /v1/traces) from any OpenTelemetry exporter.

    Protobuf and JSON, gzip or not; each request is one atomic write, answered once it is
    durable. Spans of one trace may come in several requests: they join the trace. Listens on
    127.0.0.1 unless --host says otherwise. Ctrl-C or SIGTERM stops it after answering the
    requests in hand.

    \b
    Example: tracetag serve -x chatbot
             OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 python app.py
    """
    from ..otlp.decode import protobuf_available
    from ..otlp.receiver import Receiver
    from .output import err, plural

    long_lived()
    st = _state(ctx)
    st.creates = True
    client = st.client
    if max_body < 1:
        raise InvalidInput(f"--max-body {max_body}: give at least 1 (MiB)")
    try:
        experiment_id = client.resolve_experiment_ids([experiment])[0]
    except ExperimentNotFound:
        experiment_id = client.create_experiment(experiment)
    try:
        receiver = Receiver(
            client,
            host,
            port,
            experiment_id=experiment_id,
            labels=labels,
            token=token or None,
            max_body=max_body * 1024 * 1024,
            log=_log,
            verbose=verbose,
        )
    except OSError as e:
        raise InvalidInput(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    _announce(receiver, host, client, experiment_id, token, protobuf_available())
    _run_until_signalled(receiver)
    s = receiver.stats
    err(
        f"tracetag: answered {plural(s.requests, 'request')}: stored "
        f"{plural(s.spans, 'span')} in {plural(s.traces, 'trace write')}"
        + (f", refused {plural(s.rejected_spans, 'span')}" if s.rejected_spans else "")
        + (f", {plural(s.failed, 'request')} failed" if s.failed else "")
    )


def _run_until_signalled(receiver: Any) -> None:
    """Serve until SIGINT or SIGTERM, then stop as :meth:`Receiver.stop` does."""
    import signal
    import time

    from .output import err

    # A flag, not a threading.Event: the handler runs in the main thread between two of its
    # steps, and Event.set() there would wait for the lock Event.wait() holds in that same
    # thread (a SIGTERM could hang the server for good).
    signalled: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        signalled.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    receiver.start()
    while not signalled:
        time.sleep(0.2)
    err("tracetag: stopping: answering the requests in hand")
    receiver.stop()


def _log(line: str) -> None:
    from .output import err

    err(f"tracetag: {line}")  # err shows control characters in data as escapes


def _announce(
    receiver: Any, host: str, client: Any, experiment_id: str, token: str | None, pb: bool
) -> None:
    import ipaddress

    from .output import err
    from .render import visible

    err(
        f"tracetag: receiving OTLP/HTTP traces at {receiver.url} into "
        f"{visible(client.store.path)} (experiment {experiment_id})"
    )
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = host == "localhost"
    if local:
        err("tracetag: only this machine can connect (--host 0.0.0.0 opens it to the network)")
    else:
        err(f"tracetag: listening beyond this machine: anyone who can reach {host} can send")
        if not token:
            err("tracetag: no token: set TRACETAG_RECEIVER_TOKEN to require a bearer token")
    if not pb:
        err("tracetag: JSON only: protobuf requests need pip install 'tracetag[otlp]'")
    err("tracetag: Ctrl-C stops (the requests in hand are answered first)")
