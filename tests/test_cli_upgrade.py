"""`orchestrator db upgrade` on a real PostgreSQL: it migrates, and never prints the password."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from click.testing import CliRunner

from orchestrator_cli.main import cli


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


def test_upgrade_masks_the_password(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The machine's PostgreSQL trusts local connections, so any password is accepted.
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", _with_password(postgres_url, "s3cret-pw"))
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "is up to date; nothing to apply" in result.output  # cloned from a migrated template
    assert "s3cret-pw" not in result.output
    assert ":***@" in result.output


def test_upgrade_says_which_migrations_it_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.migrate import MIGRATIONS

    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    first = CliRunner().invoke(cli, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    revisions = sorted(p.name.split("_")[0] for p in (MIGRATIONS / "versions").glob("0*.py"))
    assert f"applied {len(revisions)} migration(s)" in first.output
    assert all(f"  {revision}" in first.output for revision in revisions)
    assert "is up to date" not in first.output
    again = CliRunner().invoke(cli, ["db", "upgrade"])
    assert "is up to date; nothing to apply" in again.output
