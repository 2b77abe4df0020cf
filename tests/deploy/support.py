"""What the deployment tests compare the deploy files with: the code's settings, roles, ports and
commands, and a small Dockerfile reader."""

from __future__ import annotations

import importlib.util
import re
import shlex
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from orchestrator.settings import Settings
from orchestrator_cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("api", "worker", "scheduler", "janitor")
#: The setting holding each role's HTTP port (/healthz, /readyz, /metrics).
ROLE_PORT_FIELDS = {
    "api": "api_port",
    "worker": "worker_ops_port",
    "scheduler": "scheduler_ops_port",
    "janitor": "janitor_ops_port",
}
#: Where each workspace package lives.
PACKAGE_DIRS = {
    "orchestrator-common": "libs/common",
    "orchestrator-cli": "libs/cli",
    "orchestrator-api": "services/api",
    "orchestrator-worker": "services/worker",
    "orchestrator-scheduler": "services/scheduler",
    "orchestrator-janitor": "services/janitor",
}


def default_port(role: str) -> int:
    value = Settings.model_fields[ROLE_PORT_FIELDS[role]].default
    assert isinstance(value, int)
    return value


def setting_env_names() -> set[str]:
    """Every environment variable Settings reads: ORCHESTRATOR_<FIELD>, or a field's alias."""
    names = set()
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        names.add(alias.upper() if isinstance(alias, str) else f"ORCHESTRATOR_{name.upper()}")
    return names


def unknown_settings(names: Iterable[str]) -> list[str]:
    """The ORCHESTRATOR_* names among ``names`` that no setting reads (the settings ignore an
    unknown name silently, so a typo must be caught here)."""
    known = setting_env_names()
    return sorted(n for n in names if n.startswith("ORCHESTRATOR_") and n not in known)


def console_scripts(package: str) -> dict[str, str]:
    pyproject = tomllib.loads((ROOT / PACKAGE_DIRS[package] / "pyproject.toml").read_text())
    scripts = pyproject["project"].get("scripts", {})
    assert isinstance(scripts, dict)
    return scripts


def package_dependencies(package: str) -> list[str]:
    pyproject = tomllib.loads((ROOT / PACKAGE_DIRS[package] / "pyproject.toml").read_text())
    return [
        re.split(r"[<>=\[;~! ]", d, maxsplit=1)[0] for d in pyproject["project"]["dependencies"]
    ]


def resolves_to_cli_command(argv: list[str]) -> bool:
    """Whether ``orchestrator <argv...>`` names a real command of the click group."""
    command: click.Command = cli
    for word in argv:
        if not isinstance(command, click.Group):
            return False
        with click.Context(command) as ctx:
            sub = command.get_command(ctx, word)
        if sub is None:
            return False
        command = sub
    return not isinstance(command, click.Group)


def role_command_ok(role: str, command: list[str]) -> bool:
    """A role's container command: its package's console script (``orchestrator-<role>``)."""
    return command == [f"orchestrator-{role}"] and command[0] in console_scripts(
        f"orchestrator-{role}"
    )


def load_healthcheck() -> ModuleType:
    """deploy/docker/healthcheck.py, which the images run (not a package: loaded by path)."""
    path = ROOT / "deploy/docker/healthcheck.py"
    spec = importlib.util.spec_from_file_location("orchestrator_image_healthcheck", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- Dockerfile ---------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    arguments: str

    @property
    def words(self) -> list[str]:
        return shlex.split(self.arguments)

    def exec_form(self) -> list[str] | None:
        """The JSON-array form's words (CMD ["a", "b"]), or None for the shell form."""
        import json

        text = self.arguments
        if self.keyword == "HEALTHCHECK":  # HEALTHCHECK [--options] CMD [...]
            text = text.partition("CMD ")[2]
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, list) else None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def targets(self) -> dict[str, Stage]:
        return {s.name: s for s in self.stages if s.name}

    def chain(self, target: str) -> list[Stage]:
        """The stage and the stages it is built FROM, nearest first."""
        stages = [self.targets[target]]
        while stages[-1].base in self.targets:
            stages.append(self.targets[stages[-1].base])
        return stages

    def effective(self, target: str, keyword: str) -> Instruction | None:
        """The instruction in force for ``target`` (USER, CMD, HEALTHCHECK … are inherited)."""
        for stage in self.chain(target):
            found = stage.last(keyword)
            if found is not None:
                return found
        return None

    def external_images(self) -> list[str]:
        """Every image pulled from a registry: FROM bases that are not stages, COPY --from."""
        images = [s.base for s in self.stages if s.base not in self.targets]
        for stage in self.stages:
            for copy in stage.all("COPY"):
                for word in copy.words:
                    if word.startswith("--from="):
                        source = word.removeprefix("--from=")
                        if source not in self.targets:
                            images.append(source)
        return images


def parse_dockerfile(path: Path) -> Dockerfile:
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # comments inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        arguments = " ".join(arguments.split())
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"{path}: only ARG may come before the first FROM"
            arg_name, _, default = arguments.partition("=")
            global_args[arg_name] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, arguments))
    return Dockerfile(global_args, stages)


# Major.minor at least: PostgreSQL's releases are numbered 16.4 (a tag like "16" floats).
EXACT_TAG = re.compile(r"^[^:@\s]+:v?\d+\.\d+(\.\d+)?([-.][\w.-]+)?$")


def pinned(image: str) -> bool:
    """An image reference with an exact version tag (16.4, 1.2.3 or v1.2.3, maybe a suffix)."""
    return bool(EXACT_TAG.match(image)) and not image.endswith(":latest")


def interpolate(text: str, variables: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (a missing required one fails)."""

    def value(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3) or ""
        if name in variables and variables[name] != "":
            return variables[name]
        if operator == ":?":
            raise KeyError(f"${{{name}}} is required: {argument}")
        return argument if operator == ":-" else ""

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-?])([^}]*))?\}", value, text)


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def as_strings(mapping: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in mapping.items()}
