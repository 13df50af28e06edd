"""Which ``--store`` values are URLs (PostgreSQL, an MLflow server), and how they are shown
(never the password). Every command asks, so this imports nothing: deciding what a location is
must not load a driver or the filter machinery."""

from __future__ import annotations

__all__ = ["is_mlflow_url", "is_postgres_url", "safe_url"]

_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")
_MLFLOW_SCHEMES = ("http://", "https://", "mlflow+http://", "mlflow+https://")


def is_postgres_url(location: object) -> bool:
    return isinstance(location, str) and location.lower().startswith(_SCHEMES)


def is_mlflow_url(location: object) -> bool:
    """An MLflow tracking server: ``http(s)://host:port`` (or ``mlflow+http(s)://``)."""
    return isinstance(location, str) and location.lower().startswith(_MLFLOW_SCHEMES)


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit  # only when a URL is shown

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split("@")[-1]
    if password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname or ''}"
    with_port = netloc + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=with_port))
