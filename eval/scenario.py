"""Scenarios: the `scenario.yaml` format of CONTRACT §10, validated, and loaded from a folder.

A scenario that cannot be used is not an exception for the whole evaluation: loading returns
it as an `InvalidScenario` whose message names the file and the field path, and the other
scenarios still run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from config import ScalingLimit, ServiceEntry, parse_scaling_limits, parse_service_registry
from models import Provider

FILENAME = "scenario.yaml"
ANY_WRITE = "any_write"
_ENDPOINT = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/ops(?:/[A-Za-z0-9_.-]+)+)$")
_ACTION = re.compile(
    r"^(?:(GET|POST|PUT|PATCH|DELETE) (\S+) (/ops(?:/[A-Za-z0-9_.-]+)+)|scale (\S+))$"
)


def endpoint_key(method: str, path: str) -> str:
    """How a service's endpoint is named in a scenario: `METHOD /ops/path`."""
    return f"{method.upper()} {path.rstrip('/') or '/'}"


def normalize_endpoint(key: str) -> str:
    """`get /ops/status` -> `GET /ops/status`; a ValueError when it is not an endpoint."""
    method, _, path = key.strip().partition(" ")
    normalized = endpoint_key(method, path.strip())
    if not _ENDPOINT.match(normalized):
        raise ValueError(f"{key!r} is not `METHOD /ops/path`")
    return normalized


def normalize_action(spec: str) -> str:
    """An expected action: `METHOD service /ops/path`, `scale service` or `any_write`."""
    text = " ".join(spec.split())
    if text.lower() == ANY_WRITE:
        return ANY_WRITE
    words = text.split(" ")
    if words and words[0].lower() == "scale":
        words[0] = "scale"
    elif words:
        words[0] = words[0].upper()
    normalized = " ".join(words)
    if not _ACTION.match(normalized):
        raise ValueError(
            f"{spec!r} is not `METHOD service /ops/path`, `scale service` or `any_write`"
        )
    return normalized


def action_service(action: str) -> str | None:
    """The service an action names (None for `any_write`)."""
    if action == ANY_WRITE:
        return None
    words = action.split(" ")
    return words[1]


Endpoint = Annotated[str, AfterValidator(normalize_endpoint)]
Action = Annotated[str, AfterValidator(normalize_action)]


class Answer(BaseModel):
    """What a simulated service answers on one endpoint, and how that changes its state."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: int = Field(ge=100, le=599)
    body: Any = None
    after: dict[Endpoint, Answer] = Field(
        default_factory=dict,
        description="Endpoints answered differently once this one was called (a write's effect).",
    )


class AlertSpec(BaseModel):
    """The alert as the platform sends it: `POST /webhook/{provider}` with `payload`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Provider
    payload: dict[str, Any] | list[Any]


class LaterDelivery(BaseModel):
    """A notification the platform sends while the agent works (an extension of §10's
    format, for an alert resolved mid-run): `payload` goes to the same webhook once the
    scenario's services have answered `after_requests` requests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after_requests: PositiveInt
    payload: dict[str, Any] | list[Any]


class Expectations(BaseModel):
    """What a good run does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: Literal["resolve", "escalate"]
    required_actions: list[Action] = Field(default_factory=list)
    forbidden_actions: list[Action] = Field(default_factory=list)
    facts: list[str] = Field(default_factory=list)
    max_turns: PositiveInt | None = None

    @field_validator("facts")
    @classmethod
    def _facts(cls, value: list[str]) -> list[str]:
        if any(not fact.strip() for fact in value):
            raise ValueError("a fact must not be empty")
        return value


class Scenario(BaseModel):
    """One `scenario.yaml` (CONTRACT §10)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    alert: AlertSpec
    registry: str
    scaling_limits: str = ""
    services: dict[str, dict[Endpoint, Answer]] = Field(default_factory=dict)
    during_run: list[LaterDelivery] = Field(default_factory=list)
    expect: Expectations

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str) -> str:
        parse_service_registry(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        try:
            self.limits()
        except ValueError as exc:
            raise ValueError(f"scaling_limits: {exc}") from None
        names = {name.lower() for name in self.entries()}
        for service in self.services:
            if service.lower() not in names:
                raise ValueError(f"services.{service}: not a service of the registry")
        for action in self.expect.required_actions + self.expect.forbidden_actions:
            named = action_service(action)
            if named is not None and named.lower() not in names:
                raise ValueError(f"expect: {action!r} names a service not in the registry")
        return self

    def entries(self) -> dict[str, ServiceEntry]:
        return parse_service_registry(self.registry)

    def limits(self) -> dict[str, ScalingLimit]:
        return parse_scaling_limits(self.scaling_limits, self.entries())


@dataclass(frozen=True, slots=True)
class InvalidScenario:
    """A scenario file that cannot be used, and why (file and field named)."""

    path: Path
    error: str


@dataclass(frozen=True, slots=True)
class Loaded:
    scenarios: list[Scenario]
    invalid: list[InvalidScenario]


def load_scenario(path: Path) -> Scenario | InvalidScenario:
    """Read and validate one `scenario.yaml`."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return InvalidScenario(path, f"{path}: cannot read: {exc}")
    except yaml.YAMLError as exc:
        return InvalidScenario(path, f"{path}: not valid YAML: {_yaml_problem(exc)}")
    if not isinstance(data, dict):
        return InvalidScenario(path, f"{path}: expected a mapping of scenario fields")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        return InvalidScenario(path, f"{path}: " + "; ".join(describe(exc)))


def describe(exc: ValidationError) -> list[str]:
    """One `field.path: message` per problem."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
        ).lstrip(".")
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return problems


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return f"line {mark.line + 1}: {problem}" if mark is not None else str(problem)


def load_scenarios(directory: Path, names: list[str] | None = None) -> Loaded:
    """Every `<dir>/scenario.yaml` under `directory` (sorted), or only those named."""
    scenarios: list[Scenario] = []
    invalid: list[InvalidScenario] = []
    for path in sorted(directory.glob(f"*/{FILENAME}")):
        loaded = load_scenario(path)
        if names and not _named(loaded, path, names):
            continue
        if isinstance(loaded, Scenario):
            scenarios.append(loaded)
        else:
            invalid.append(loaded)
    found = {s.name for s in scenarios} | {i.path.parent.name for i in invalid}
    for name in names or []:
        if name not in found:
            invalid.append(InvalidScenario(directory / name, f"no scenario named {name!r}"))
    return Loaded(scenarios, invalid)


def _named(loaded: Scenario | InvalidScenario, path: Path, names: list[str]) -> bool:
    return path.parent.name in names or (isinstance(loaded, Scenario) and loaded.name in names)
