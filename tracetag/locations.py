"""Which ``--store`` values are URLs (PostgreSQL, an MLflow server), and how they are shown
(never the password). Every command asks, so this imports nothing: deciding what a location is
must not load a driver or the filter machinery."""

from __future__ import annotations

__all__ = ["is_mlflow_url", "is_postgres_url", "local_path", "safe_url"]

_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")
_MLFLOW_SCHEMES = ("http://", "https://", "mlflow+http://", "mlflow+https://")


def is_postgres_url(location: object) -> bool:
    return isinstance(location, str) and location.lower().startswith(_SCHEMES)


def is_mlflow_url(location: object) -> bool:
    """An MLflow tracking server: ``http(s)://host:port`` (or ``mlflow+http(s)://``)."""
    return isinstance(location, str) and location.lower().startswith(_MLFLOW_SCHEMES)


def local_path(location: str) -> str:
    """What a location that is not a server's URL names on disk: ``file:///path`` is the path;
    another ``scheme:/...`` is refused (ValueError, one line), since taken as a path it would
    make a folder named ``mysql:`` or ``postgresql:`` (one slash short) and a store in it."""
    scheme, sep, _rest = location.partition(":/")
    if not sep or len(scheme) < 2 or not scheme[0].isalpha():
        return location  # (a Windows drive, ``C:/``, has a one-letter "scheme")
    if not all(c.isalnum() or c in "+.-" for c in scheme):
        return location
    if scheme.lower() == "file":
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(location)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"{location}: a file URL names a file of this machine (file:///path)")
        return unquote(parts.path)
    known = "postgresql://USER@HOST/DB, http(s)://HOST:PORT for an MLflow server, or a path"
    raise ValueError(f"{safe_url(location)}: not a store tracetag can open: use {known}")


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
