"""Runtime configuration: every environment variable of the contract, validated once.

`load_settings()` is the only place that reads the environment. Problems are collected
into one `ConfigError` whose message names every bad or missing variable and never echoes
a value (secrets included), so a failed start is readable and safe to paste into a ticket.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _case_folded(fold: Callable[[str], str]) -> BeforeValidator:
    return BeforeValidator(lambda value: fold(value.strip()) if isinstance(value, str) else value)


# Annotate a word-valued field with one of these to accept it in any case, with spaces around
# (`Annotated[Literal["GET", "POST"], UpperCase]`): settings, tool arguments and API bodies.
UpperCase = _case_folded(str.upper)
LowerCase = _case_folded(str.lower)

LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], UpperCase]
ScalingMode = Literal["application", "cloud"]

_SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")


class ConfigError(Exception):
    """The configuration cannot be used. `problems` holds one line per variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        count = len(problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration ({count} problem{'s' * (count != 1)}):\n{lines}")


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """One monitored service: where its /ops/* lives and whether it is critical."""

    name: str
    base_url: str
    critical: bool

    @property
    def host(self) -> str:
        return (urlsplit(self.base_url).hostname or "").lower()


@dataclass(frozen=True, slots=True)
class ScalingLimit:
    """Bounds the agent must respect when scaling one service."""

    service: str
    min_replicas: int
    max_replicas: int
    mode: ScalingMode


def check_http_url(value: str) -> str:
    """Accept an absolute http(s) URL with a host; return it without a trailing slash."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    return value.strip().rstrip("/")


HttpBaseUrl = Annotated[str, AfterValidator(check_http_url)]
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")


def _split_entries(raw: str) -> list[str]:
    return [chunk.strip() for chunk in raw.split(",") if chunk.strip()]


def _label(chunk: str) -> str:
    name = chunk.split("|", 1)[0].strip()
    return f" ({name})" if _SERVICE_NAME.match(name) else ""


def parse_service_registry(raw: str) -> dict[str, ServiceEntry]:
    """Parse `name|url|critical,...`; every problem is reported, entry by entry."""
    registry: dict[str, ServiceEntry] = {}
    problems: list[str] = []
    for index, chunk in enumerate(_split_entries(raw), start=1):
        try:
            entry = _parse_service_entry(chunk)
        except ValueError as exc:
            problems.append(f"entry {index}{_label(chunk)}: {exc}")
            continue
        if entry.name.lower() in (name.lower() for name in registry):
            problems.append(f"entry {index} ({entry.name}): duplicate service name")
            continue
        registry[entry.name] = entry
    if problems:
        raise ValueError("; ".join(problems))
    if not registry:
        raise ValueError("must list at least one service as name|url|critical")
    return registry


def _parse_service_entry(chunk: str) -> ServiceEntry:
    parts = [p.strip() for p in chunk.split("|")]
    if len(parts) not in (2, 3):
        raise ValueError("expected name|url|critical")
    name, url = parts[0], parts[1]
    if not _SERVICE_NAME.match(name):
        raise ValueError("name must be 1-63 characters of letters, digits, '.', '_' or '-'")
    try:
        base_url = check_http_url(url)
    except ValueError as exc:
        raise ValueError(f"URL {exc}") from None
    critical = parts[2].lower() if len(parts) == 3 else "false"
    if critical not in ("true", "false"):
        raise ValueError("critical must be true or false")
    return ServiceEntry(name=name, base_url=base_url, critical=critical == "true")


def parse_scaling_limits(raw: str, registry: dict[str, ServiceEntry]) -> dict[str, ScalingLimit]:
    """Parse `name|min|max|mode,...` against an already parsed registry."""
    limits: dict[str, ScalingLimit] = {}
    problems: list[str] = []
    for index, chunk in enumerate(_split_entries(raw), start=1):
        try:
            limit = _parse_scaling_entry(chunk, registry)
        except ValueError as exc:
            problems.append(f"entry {index}{_label(chunk)}: {exc}")
            continue
        if limit.service in limits:
            problems.append(f"entry {index} ({limit.service}): duplicate service name")
            continue
        limits[limit.service] = limit
    if problems:
        raise ValueError("; ".join(problems))
    return limits


def _parse_scaling_entry(chunk: str, registry: dict[str, ServiceEntry]) -> ScalingLimit:
    parts = [p.strip() for p in chunk.split("|")]
    if len(parts) != 4:
        raise ValueError("expected name|min|max|mode")
    name, low, high, mode = parts
    canonical = {n.lower(): n for n in registry}.get(name.lower())
    if canonical is None:
        raise ValueError("is not in SERVICE_REGISTRY")
    if not (low.isdigit() and high.isdigit()):
        raise ValueError("min and max must be whole numbers >= 0")
    if int(low) > int(high):
        raise ValueError("min must be <= max")
    if mode not in ("application", "cloud"):
        raise ValueError("mode must be application or cloud")
    return ScalingLimit(canonical, int(low), int(high), mode)  # type: ignore[arg-type]  # checked above


class Settings(BaseSettings):
    """Every variable of CONTRACT §2. Build it with `load_settings()`, or by keyword in tests."""

    model_config = SettingsConfigDict(
        case_sensitive=False,
        hide_input_in_errors=True,
        extra="ignore",
        validate_default=True,
    )

    llm_api_key: SecretStr
    llm_model: str = "gpt-4o"
    llm_api_base_url: HttpBaseUrl = "https://models.inference.ai.azure.com"

    pagerduty_api_token: SecretStr
    pagerduty_routing_key: SecretStr
    pagerduty_escalation_policy_id: str | None = None
    pagerduty_from_email: str | None = None
    pagerduty_events_url: HttpBaseUrl = "https://events.pagerduty.com/v2/enqueue"
    pagerduty_api_url: HttpBaseUrl = "https://api.pagerduty.com"

    ops_auth_token: SecretStr
    webhook_auth_token: SecretStr | None = None

    service_registry: Annotated[dict[str, ServiceEntry], NoDecode]
    scaling_limits: Annotated[dict[str, ScalingLimit], NoDecode] = Field(default_factory=dict)

    sre_prompt_path: Path = Path("/app/WINDSURF_SRE.md")
    incidents_dir: Path = Path("/app/incidents")

    max_concurrent_alerts: PositiveInt = 3
    alert_queue_ttl_seconds: PositiveFloat = 600
    max_queue_size: PositiveInt = 1000
    dedup_window_seconds: NonNegativeFloat = 900
    resolve_grace_seconds: NonNegativeFloat = 300
    pagerduty_auto_resolve: bool = True
    state_backend: Annotated[Literal["memory", "postgres"], LowerCase] = "memory"
    database_url: SecretStr | None = None
    run_lease_seconds: PositiveFloat = 30
    max_tokens_per_incident: NonNegativeInt = 100_000
    max_tokens_per_hour: NonNegativeInt = 0
    agent_max_turns: PositiveInt = 20
    agent_timeout_seconds: PositiveFloat = 300
    agent_mode: Annotated[Literal["live", "shadow", "approve"], LowerCase] = "live"
    approval_timeout_seconds: PositiveFloat = 900
    public_url: HttpBaseUrl | None = None
    console_identity_header: str | None = None
    tool_output_max_chars: Annotated[int, Field(ge=200)] = 8000
    max_tool_calls_per_turn: PositiveInt = 16
    pagerduty_max_events_per_minute: PositiveInt = 60
    webhook_max_body_bytes: PositiveInt = 1_048_576
    shutdown_grace_seconds: NonNegativeFloat = 30
    ops_timeout_seconds: PositiveFloat = 10

    cloud_provider: Annotated[Literal["none", "gcp", "aws"], LowerCase] = "none"
    gcp_project_id: str | None = None
    gcp_logging_url: HttpBaseUrl = "https://logging.googleapis.com"
    gcp_monitoring_url: HttpBaseUrl = "https://monitoring.googleapis.com"
    # AWS: the standard variables. AWS_REGION wins over AWS_DEFAULT_REGION, as in the SDKs.
    aws_region: str | None = Field(
        default=None, validation_alias=AliasChoices("aws_region", "aws_default_region")
    )
    aws_endpoint_url_logs: HttpBaseUrl | None = None
    aws_endpoint_url_monitoring: HttpBaseUrl | None = None
    aws_log_group_pattern: str = "/ecs/{service}"
    # ECS metrics are keyed by ClusterName *and* ServiceName: the cluster the services run in.
    aws_ecs_cluster: str | None = None

    log_level: LogLevel = "INFO"
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = "sre-agent"

    @field_validator(
        "pagerduty_escalation_policy_id",
        "pagerduty_from_email",
        "gcp_project_id",
        "aws_region",
        "aws_ecs_cluster",
        "console_identity_header",
    )
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("public_url", mode="before")
    @classmethod
    def _blank_url_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("console_identity_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not _HEADER_NAME.fullmatch(value):
            raise ValueError("must be an HTTP header name, e.g. X-Goog-Authenticated-User-Email")
        return value

    @field_validator(
        "llm_api_key", "pagerduty_api_token", "pagerduty_routing_key", "ops_auth_token"
    )
    @classmethod
    def _secret_not_blank(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("service_registry", mode="before")
    @classmethod
    def _parse_registry(cls, value: Any) -> Any:
        return parse_service_registry(value) if isinstance(value, str) else value

    @field_validator("scaling_limits", mode="before")
    @classmethod
    def _parse_limits(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        registry = info.data.get("service_registry")
        if registry is None:
            raise ValueError("cannot be checked until SERVICE_REGISTRY is valid")
        return parse_scaling_limits(value, registry)

    @field_validator("webhook_auth_token")
    @classmethod
    def _default_webhook_token(cls, value: SecretStr | None, info: ValidationInfo) -> Any:
        if value is not None and value.get_secret_value().strip():
            return value
        return info.data.get("ops_auth_token")

    @field_validator("database_url")
    @classmethod
    def _database_for_postgres(cls, value: SecretStr | None, info: ValidationInfo) -> Any:
        url = value.get_secret_value().strip() if value is not None else ""
        if not url:
            if info.data.get("state_backend") == "postgres":
                raise ValueError("is required when STATE_BACKEND=postgres")
            return None
        if urlsplit(url).scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL")  # the value itself is never echoed
        return SecretStr(url)

    @field_validator("sre_prompt_path")
    @classmethod
    def _prompt_readable(cls, value: Path) -> Path:
        try:
            text = value.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{value} is not UTF-8 text") from None
        if not text.strip():
            raise ValueError(f"{value} is empty")
        return value

    @field_validator("incidents_dir")
    @classmethod
    def _incidents_writable(cls, value: Path) -> Path:
        try:
            value.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot create {value}: {exc.strerror or exc}") from None
        if not os.access(value, os.W_OK | os.X_OK):
            raise ValueError(f"{value} is not writable")
        return value

    @field_validator("gcp_project_id")
    @classmethod
    def _gcp_needs_project(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("cloud_provider") == "gcp" and not value:
            raise ValueError("is required when CLOUD_PROVIDER=gcp")
        return value

    @field_validator("aws_region")
    @classmethod
    def _aws_needs_region(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("cloud_provider") == "aws" and not value:
            raise ValueError("is required when CLOUD_PROVIDER=aws (or set AWS_DEFAULT_REGION)")
        if value and not _AWS_REGION.match(value):
            raise ValueError("must look like us-east-1")
        return value

    @field_validator("aws_log_group_pattern")
    @classmethod
    def _log_group_names_service(cls, value: str) -> str:
        if value.count("{service}") != 1 or "{" in value.replace("{service}", ""):
            raise ValueError("must contain {service} exactly once, e.g. /ecs/{service}")
        return value

    @property
    def webhook_token(self) -> SecretStr:
        """The token inbound webhooks must present (falls back to OPS_AUTH_TOKEN)."""
        return self.webhook_auth_token or self.ops_auth_token

    @property
    def shadow(self) -> bool:
        return self.agent_mode == "shadow"

    @property
    def approve(self) -> bool:
        return self.agent_mode == "approve"

    def console_url(self, incident_id: str) -> str | None:
        """The incident's console page under PUBLIC_URL (None without it), for links in
        PagerDuty events and reports."""
        if self.public_url is None:
            return None
        return f"{self.public_url.rstrip('/')}/console/alerts/{quote(incident_id, safe=':@')}"

    def secret_values(self) -> list[str]:
        """Every configured secret, for redaction. Never log the result."""
        secrets = [
            self.llm_api_key,
            self.pagerduty_api_token,
            self.pagerduty_routing_key,
            self.ops_auth_token,
            self.webhook_token,
        ]
        values = {s.get_secret_value() for s in secrets if s.get_secret_value()}
        if self.database_url is not None:
            url = self.database_url.get_secret_value()
            values.add(url)
            password = urlsplit(url).password
            if password:
                values.add(password)
        return sorted(values, key=len)[::-1]

    def service(self, name: str) -> ServiceEntry | None:
        """Registry lookup, case-insensitive."""
        entry = self.service_registry.get(name)
        if entry is not None:
            return entry
        lowered = name.lower()
        return next((e for n, e in self.service_registry.items() if n.lower() == lowered), None)


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per problem, named by environment variable, with no input value."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        variable = str(error["loc"][0]).upper() if error["loc"] else "CONFIGURATION"
        if error["type"] == "missing":
            message = "is required but not set"
        else:
            message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{variable}: {message}")
    return problems


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the environment (plus keyword overrides) or raise `ConfigError`."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None
