"""Options that are plain strings, lists of strings, whole numbers and flags are converted here.

Typer 0.29 converts every option through a pydantic ``TypeAdapter``, and importing and building
those costs about 0.15 s: more than the rest of ``tracetag tag set`` on a small store, paid by
every command a shell loop runs. Anything else (paths, choices) still goes through Typer's own
conversion, and a Typer without adapters is left as it is.
"""

from __future__ import annotations

from typing import Any, get_args, get_origin

__all__ = ["plain_conversion"]


def plain_conversion() -> None:
    try:
        from typer import _coercion, core
        from typer._click.exceptions import BadParameter
    except ImportError:  # pragma: no cover - a Typer without adapters needs nothing
        return
    if not hasattr(core._TyperParameter, "get_runtime_param"):  # pragma: no cover
        return

    class Plain(_coercion.RuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                return _convert(self.annotation, value, param.type_descriptor.parameter_info)
            except ValueError as e:
                raise BadParameter(str(e), ctx=ctx, param=param) from None

    original = core._TyperParameter.get_runtime_param

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None and _plain(self.type_descriptor):
            desc = self.type_descriptor
            self._runtime_param = Plain(desc.parameter_info, desc.annotation)
        return original(self)

    core._TyperParameter.get_runtime_param = get_runtime_param  # type: ignore[method-assign]


def _plain(desc: Any) -> bool:
    try:
        info = desc.parameter_info
        if desc.is_file or desc.is_path or desc.is_choice or getattr(info, "parser", None):
            return False
        annotation = desc.annotation
        if annotation in (str, int, bool):
            return True
        return get_origin(annotation) is list and get_args(annotation) == (str,)
    except Exception:  # pragma: no cover - a Typer that describes options differently
        return False


def _convert(annotation: Any, value: Any, info: Any) -> Any:
    """``value`` as ``annotation``, or ValueError with what a person should read."""
    if annotation is str:
        return value if isinstance(value, str) else str(value)
    if annotation is int:
        return _whole(value, info)
    if annotation is bool:
        return _yes_or_no(value)
    return [v if isinstance(v, str) else str(v) for v in value]  # list[str]


def _whole(value: Any, info: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a whole number")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None
    if info.min is not None and number < info.min:
        raise ValueError(f"must be at least {info.min}, not {number}")
    if info.max is not None and number > info.max:
        raise ValueError(f"must be at most {info.max}, not {number}")
    return number


def _yes_or_no(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "on"):
        return True
    if text in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError(f"{value!r} is not yes or no")
