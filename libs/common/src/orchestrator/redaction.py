"""Secret job arguments, shown as ``[redacted]`` wherever arguments are displayed.

A job marks parameters secret with ``@job(secret=["password"])``. The marking is stored in the job's
registered JSON Schema as ``"writeOnly": true`` on those properties (JSON Schema's keyword for a
value that is sent but never read back), so the API and the dashboard, which never import job code,
know it from the catalog. A parameter typed ``pydantic.SecretStr`` carries the same keyword in its
schema and is redacted too.

Only display copies are redacted: the stored job and its messages keep the real values, which the
worker needs to run the job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.catalog import Registration, secret_parameters

__all__ = ["REDACTED", "redact", "redact_for", "redact_view", "secret_parameters"]

REDACTED = "[redacted]"


def redact(
    parameters: Sequence[str],
    json_schema: Mapping[str, Any],
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
) -> tuple[list[Any], dict[str, Any]]:
    """Copies of ``args`` and ``kwargs`` with every secret parameter's value replaced.

    Positional arguments are matched to ``parameters`` by position, as a call would bind them.
    """
    secret = secret_parameters(json_schema)
    shown_args = list(args or ())
    shown_kwargs = dict(kwargs or {})
    if not secret:
        return shown_args, shown_kwargs
    for index, name in enumerate(parameters[: len(shown_args)]):
        if name in secret:
            shown_args[index] = REDACTED
    for name in shown_kwargs.keys() & secret:
        shown_kwargs[name] = REDACTED
    return shown_args, shown_kwargs


def redact_for(
    registration: Registration | None,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
) -> tuple[list[Any], dict[str, Any]]:
    """:func:`redact` with a catalog registration (``None``: a job no worker registered, shown as
    it is; nothing marks any of its arguments secret)."""
    if registration is None:
        return list(args or ()), dict(kwargs or {})
    return redact(registration.parameters, registration.json_schema, args, kwargs)


def redact_view(view: dict[str, Any], registrations: Mapping[str, Registration]) -> dict[str, Any]:
    """A job or recurring definition as shown (``"job"``, ``"args"``, ``"kwargs"`` keys), with its
    secret arguments redacted in place; returned for chaining."""
    view["args"], view["kwargs"] = redact_for(
        registrations.get(view["job"]), view.get("args"), view.get("kwargs")
    )
    return view
