"""Secret job arguments without a service: marked ``writeOnly`` in the registered schema, redacted
in a copy wherever arguments are shown (the dashboard too), never quoted by the worker's own
validation. What the API and the stores answer about them is tests/tracing/test_redaction.py and
tests/api/test_secrets.py."""

from __future__ import annotations

import pydantic
import pytest

from orchestrator import job
from orchestrator.catalog import Registration, validate_with_schema
from orchestrator.redaction import REDACTED, redact, redact_for, secret_parameters
from tests.tracing.jobs import PASSWORD, sign_in


def test_secret_parameters_are_write_only_in_the_stored_schema() -> None:
    registration = Registration.of(sign_in)
    assert registration.json_schema["properties"]["password"]["writeOnly"] is True
    assert "writeOnly" not in registration.json_schema["properties"]["user"]
    assert secret_parameters(registration.json_schema) == {"password"}
    # The marking is an annotation: the API still validates the value as before.
    validate_with_schema(registration, ["ann", PASSWORD], {})


def test_positional_and_keyword_secrets_are_redacted_in_a_copy() -> None:
    registration = Registration.of(sign_in)
    args = ["ann", PASSWORD]
    assert redact_for(registration, args, {}) == (["ann", REDACTED], {})
    assert redact_for(registration, [], {"user": "ann", "password": PASSWORD}) == (
        [],
        {"user": "ann", "password": REDACTED},
    )
    assert args == ["ann", PASSWORD]
    # A job no worker registered: nothing is known to be secret.
    assert redact_for(None, args, {}) == (args, {})


def test_a_secret_str_parameter_is_secret_too() -> None:
    @job(name="tests.vault")
    def vault(path: str, key: pydantic.SecretStr) -> None: ...

    assert redact(vault.parameter_names, vault.json_schema, ["/a", "k"], {}) == (
        ["/a", REDACTED],
        {},
    )


def test_secret_must_name_parameters() -> None:
    with pytest.raises(TypeError, match="secret names no parameter: pasword"):

        @job(secret=["pasword"])
        def typo(password: str) -> None: ...

    with pytest.raises(TypeError, match="list of parameter names"):
        job(secret="password")


def test_the_workers_own_check_never_quotes_a_value() -> None:
    """The worker validates again with a strict pydantic model; its message becomes the job's
    stored error, so it names the argument and the rule only."""
    from orchestrator.catalog import validate_with_model
    from orchestrator.errors import JobValidationError
    from tests.api.bounds_jobs import sign_in
    from tests.jobs_for_tests import echo

    for function, kwargs in (
        (echo, {"text": "t", "when": "not-a-time-xyz"}),
        (sign_in, {"user": "u", "password": 918273}),
    ):
        try:
            validate_with_model(function, [], kwargs)
        except JobValidationError as exc:
            message = str(exc)
        else:
            raise AssertionError("accepted")
        assert "not-a-time-xyz" not in message and "918273" not in message, message
        assert f"argument {function.parameter_names[-1]!r}" in message


def test_arguments_are_displayed_with_secrets_redacted() -> None:
    from orchestrator.catalog import Registration
    from orchestrator_api.dashboard.web import display_arguments

    schema = {"properties": {"user": {}, "password": {"type": "string", "writeOnly": True}}}
    login = Registration("app.login", "default", ["user", "password"], schema, "h", {})
    registrations = {"app.login": login}
    shown = display_arguments(registrations, "app.login", ["ada", "s3cret"], {})
    assert shown == '"ada", "[redacted]"'
    shown = display_arguments(registrations, "app.login", [], {"user": "bo", "password": "x"})
    assert shown == 'user="bo", password="[redacted]"'
    # A job no worker registered: nothing marks an argument secret.
    assert display_arguments(registrations, "other", [1, {"a": "é"}], {}) == '1, {"a": "é"}'
