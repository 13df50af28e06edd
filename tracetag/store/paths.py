"""Where a store lives, what may be one, and the modes of the files it creates."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from ..errors import NotAStore
from ..locations import local_path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def default_store_path() -> Path:
    """The per-user store: ``$XDG_DATA_HOME/tracetag/store.json`` or the platform's equivalent."""
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif os.uname().sysname == "Darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "tracetag" / "store.json"


def resolve_store_path(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else ``$TRACETAG_STORE``, else the per-user default.

    A directory means the ``store.json`` inside it. Symbolic links are resolved here, once, so
    that the journal, span and lock files sit beside the real file (not beside the link) and a
    compaction never replaces a link with a file. Anything but a regular file is refused: a
    device or a FIFO as the store would be overwritten or hang the reader.
    """
    chosen = path or os.environ.get("TRACETAG_STORE") or default_store_path()
    if isinstance(chosen, str):
        try:
            chosen = local_path(chosen)
        except ValueError as e:
            raise NotAStore(str(e)) from None
    p = Path(chosen).expanduser()
    if p.is_dir():
        p = p / "store.json"
    p = Path(os.path.realpath(p))
    check_store_file(p)
    return p


def check_store_file(p: Path) -> None:
    """Refuse a store path that exists and is not a regular file."""

    try:
        mode = os.stat(p).st_mode
    except OSError:
        return
    if stat.S_ISREG(mode):
        return
    kind = (
        "a directory"
        if stat.S_ISDIR(mode)
        else "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    raise NotAStore(f"{p}: is {kind}, not a tracetag store file")


def is_regular(st: os.stat_result) -> bool:

    return stat.S_ISREG(st.st_mode)


def orphan_files(path: Path, spans_in_use: Path) -> list[Path]:
    """Files a killed compaction or vacuum left beside the store (temp files, old span files).

    Only writers holding the lock create such files, so under the lock every one of them that
    the current base does not use is garbage.
    """
    folder = path.parent
    temp_prefixes = (
        f".{path.name}.tmp-",
        f".{path.name}-journal.tmp-",
        f".{path.name}-journal-checkpoint.tmp-",
    )
    spans_prefix = f"{path.name}-spans."
    import_prefix = f"{path.name}-import."
    found = []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        if (
            name.startswith(temp_prefixes)
            or (
                name.startswith(spans_prefix)
                and name[len(spans_prefix) :].isdigit()
                and folder / name != spans_in_use
            )
            or (name.startswith(import_prefix) and not _alive(name[len(import_prefix) :]))
        ):
            found.append(folder / name)
    return sorted(found)


def remove_orphans(path: Path, spans_in_use: Path) -> int:
    """Remove the :func:`orphan_files` (call under the lock); how many went."""
    removed = 0
    for orphan in orphan_files(path, spans_in_use):
        with contextlib.suppress(OSError):
            orphan.unlink()
            removed += 1
    return removed


def _alive(staged_by: str) -> bool:
    """Whether the process named in a staged import's file name (``PID`` or ``PID-spans``)
    still runs: an import stages without the lock, so its files are not garbage until it
    is gone."""
    pid = staged_by.removesuffix("-spans")
    if not pid.isdigit():
        return True  # not ours to remove
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # (another user's process)
    return True


def create_file(path: Path, mode: int, flags: int = os.O_WRONLY | os.O_TRUNC) -> int:
    """Open ``path``, creating it with exactly ``mode`` (the umask would narrow a shared
    store's group bits)."""
    fd = os.open(path, flags | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        if hasattr(os, "fchmod") and os.fstat(fd).st_mode & 0o777 != mode:
            os.fchmod(fd, mode)
    except OSError:
        pass  # not our file (a shared store created by another user): keep its mode
    return fd


def file_mode(base: Path) -> int:
    """The mode for a new file of the store: the base file's, else private."""
    try:
        return os.stat(base).st_mode & 0o666
    except OSError:
        return PRIVATE_FILE
