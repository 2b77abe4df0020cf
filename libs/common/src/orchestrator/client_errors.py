"""The clients' error for an API that cannot be reached (issue 14).

It is an :class:`~orchestrator.errors.OrchestratorError`, like every error the clients raise on
purpose, and still the ``httpx.ConnectError`` (or ``httpx.ConnectTimeout``) they raised before,
so existing ``except httpx.ConnectError`` code keeps working. It is not an
:class:`~orchestrator.errors.ApiError`: that one is an answer of the API (its status, code and
message), and code that handles answers must not take "nothing answered" for one.

It lives apart from ``orchestrator.errors`` because it subclasses httpx, which ``import
orchestrator`` does not load; ``orchestrator.errors.ApiUnavailableError`` names it on first use.
"""

from __future__ import annotations

import httpx

from orchestrator.errors import OrchestratorError


class ApiUnavailableError(OrchestratorError, httpx.ConnectError):
    """Nothing answered at the API's URL: no connection could be made (refused, no such host,
    no route, or no answer to connecting in time). The message names the URL."""

    def __init__(self, url: str, reason: str, *, request: httpx.Request | None = None) -> None:
        self.url = url
        #: What the connection attempt said (httpx's or the socket's words).
        self.reason = reason
        super().__init__(
            f"cannot reach the Orchestrator API at {url} ({reason}): is the API running, and "
            "is this its URL (the client's base_url; ORCHESTRATOR_URL for the command line)?"
        )
        self._request = request


class ApiConnectTimeoutError(ApiUnavailableError, httpx.ConnectTimeout):
    """:class:`ApiUnavailableError` for a connection that was not made in time; still the
    ``httpx.ConnectTimeout`` the clients raised before."""


def unavailable(url: str, error: httpx.ConnectError | httpx.ConnectTimeout) -> ApiUnavailableError:
    """The error to raise for a failure to connect to the API at ``url``."""
    if isinstance(error, ApiUnavailableError):
        return error
    timed_out = isinstance(error, httpx.ConnectTimeout)
    kind = ApiConnectTimeoutError if timed_out else ApiUnavailableError
    try:
        request: httpx.Request | None = error.request
    except RuntimeError:  # raised outside an httpx client (the blocking client's own HTTP)
        request = None
    return kind(url, str(error) or type(error).__name__, request=request)
