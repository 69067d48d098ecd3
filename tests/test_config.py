from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, ScalingLimit, load_settings
from tests.conftest import TEST_SECRETS, SettingsFactory
from tools.arguments import AcknowledgeArgs, CallOpsArgs, QueryLogsArgs


def test_valid_settings_parse_registry_and_limits(make_settings: SettingsFactory) -> None:
    settings = make_settings(scaling_limits="api|1|5|application, worker|0|2|cloud")
    assert settings.service_registry["api"].base_url == "http://127.0.0.1:9"
    assert settings.service_registry["api"].critical is True
    assert settings.service_registry["worker"].critical is False
    assert settings.scaling_limits["api"] == ScalingLimit("api", 1, 5, "application")
    assert settings.webhook_token.get_secret_value() == TEST_SECRETS["ops_auth_token"]


def test_defaults_match_the_contract(settings: object) -> None:
    expected = {
        "llm_model": "gpt-4o",
        "llm_api_base_url": "https://models.inference.ai.azure.com",
        "pagerduty_events_url": "https://events.pagerduty.com/v2/enqueue",
        "pagerduty_api_url": "https://api.pagerduty.com",
        "max_concurrent_alerts": 3,
        "alert_queue_ttl_seconds": 600,
        "max_queue_size": 1000,
        "dedup_window_seconds": 900,
        "resolve_grace_seconds": 300,
        "pagerduty_auto_resolve": True,
        "max_tokens_per_incident": 100_000,
        "max_tokens_per_hour": 0,
        "agent_max_turns": 20,
        "agent_timeout_seconds": 300,
        "agent_mode": "live",
        "approval_timeout_seconds": 900,
        "public_url": None,
        "console_identity_header": None,
        "tool_output_max_chars": 8000,
        "webhook_max_body_bytes": 1_048_576,
        "shutdown_grace_seconds": 30,
        "cloud_provider": "none",
        "ops_timeout_seconds": 10,
        "log_level": "INFO",
    }
    assert {k: getattr(settings, k) for k in expected} == expected


def test_every_problem_is_reported_at_once_by_variable_name(
    make_settings: SettingsFactory,
) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings(
            llm_api_key=None,
            service_registry="api|http://ok:1|true,worker|ftp://bad|false",
            max_concurrent_alerts="0",
            agent_mode="yolo",
        )
    message = str(info.value)
    assert "LLM_API_KEY" in message
    assert "SERVICE_REGISTRY: entry 2 (worker): URL must be an http:// or https:// URL" in message
    assert "MAX_CONCURRENT_ALERTS" in message
    assert "AGENT_MODE" in message
    assert len(info.value.problems) == 4


def test_scaling_limits_must_name_registered_services_and_order_bounds(
    make_settings: SettingsFactory,
) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings(scaling_limits="ghost|1|2|application,api|5|2|cloud,worker|1|2|magic")
    message = str(info.value)
    assert "entry 1 (ghost): is not in SERVICE_REGISTRY" in message
    assert "entry 2 (api): min must be <= max" in message
    assert "entry 3 (worker): mode must be application or cloud" in message


@pytest.mark.parametrize(
    ("registry", "fragment"),
    [
        ("api|http://a:1|true,api|http://b:1|false", "duplicate service name"),
        ("api|http://:1|true", "URL must name a host"),
        ("api|http://a:1|maybe", "critical must be true or false"),
        ("a b|http://a:1|true", "name must be"),
        ("", "at least one service"),
    ],
)
def test_bad_registry_entries_say_why(
    make_settings: SettingsFactory, registry: str, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        make_settings(service_registry=registry)


def test_secrets_are_never_echoed_in_errors(make_settings: SettingsFactory) -> None:
    secret = "sk-super-secret-value-that-must-not-leak"
    with pytest.raises(ConfigError) as info:
        make_settings(llm_api_key=secret, max_queue_size=secret, webhook_max_body_bytes=secret)
    assert secret not in str(info.value)
    assert secret[:6] not in str(info.value)


def test_prompt_must_exist_and_not_be_empty(make_settings: SettingsFactory, tmp_path: Path) -> None:
    empty = tmp_path / "empty.md"
    empty.write_text("  \n")
    with pytest.raises(ConfigError, match="SRE_PROMPT_PATH: .*is empty"):
        make_settings(sre_prompt_path=str(empty))
    with pytest.raises(ConfigError, match="SRE_PROMPT_PATH: cannot read"):
        make_settings(sre_prompt_path=str(tmp_path / "missing.md"))


def test_incidents_dir_is_created(make_settings: SettingsFactory, tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    assert make_settings(incidents_dir=str(target)).incidents_dir.is_dir()


def test_gcp_provider_requires_project(make_settings: SettingsFactory) -> None:
    with pytest.raises(ConfigError, match="GCP_PROJECT_ID: is required when CLOUD_PROVIDER=gcp"):
        make_settings(cloud_provider="gcp")
    assert make_settings(cloud_provider="GCP", gcp_project_id="p").cloud_provider == "gcp"


def test_blank_optional_names_count_as_unset(make_settings: SettingsFactory) -> None:
    settings = make_settings(aws_ecs_cluster="  ", pagerduty_from_email="")
    assert settings.aws_ecs_cluster is None
    assert settings.pagerduty_from_email is None
    assert make_settings(aws_ecs_cluster=" prod ").aws_ecs_cluster == "prod"


def test_environment_is_read_case_insensitively(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_QUEUE_SIZE", "7")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = make_settings()
    assert settings.max_queue_size == 7
    assert settings.log_level == "DEBUG"


def test_load_settings_without_environment_lists_required_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("LLM_API_KEY", "PAGERDUTY_API_TOKEN", "PAGERDUTY_ROUTING_KEY", "OPS_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SERVICE_REGISTRY", raising=False)
    monkeypatch.setenv("SRE_PROMPT_PATH", str(tmp_path / "none.md"))
    monkeypatch.setenv("INCIDENTS_DIR", str(tmp_path / "inc"))
    with pytest.raises(ConfigError) as info:
        load_settings()
    for name in (
        "LLM_API_KEY",
        "PAGERDUTY_API_TOKEN",
        "PAGERDUTY_ROUTING_KEY",
        "OPS_AUTH_TOKEN",
        "SERVICE_REGISTRY",
        "SRE_PROMPT_PATH",
    ):
        assert f"{name}:" in str(info.value)


def test_word_values_are_read_in_any_case(make_settings: SettingsFactory) -> None:
    settings = make_settings(agent_mode=" SHADOW ", cloud_provider="None", log_level="warning")
    assert (settings.agent_mode, settings.cloud_provider, settings.log_level) == (
        "shadow",
        "none",
        "WARNING",
    )
    call = CallOpsArgs.model_validate({"service": "api", "endpoint": "status", "method": " post"})
    assert call.method == "POST"
    assert AcknowledgeArgs.model_validate({"action": "Resolve"}).action == "resolve"
    assert QueryLogsArgs.model_validate({"service": "api", "severity": "error"}).severity == "ERROR"


def test_approve_mode_and_its_console_settings(make_settings: SettingsFactory) -> None:
    settings = make_settings(
        agent_mode="Approve",
        approval_timeout_seconds="60",
        public_url="https://sre.example.com/",
        console_identity_header="X-Goog-Authenticated-User-Email",
    )
    assert settings.approve
    assert not settings.shadow
    assert settings.approval_timeout_seconds == 60
    assert settings.console_url("am:x/y") == "https://sre.example.com/console/alerts/am:x%2Fy"
    assert make_settings(public_url=" ").console_url("x") is None
    with pytest.raises(ConfigError) as info:
        make_settings(
            public_url="sre.example.com",
            console_identity_header="X-User: evil",
            approval_timeout_seconds="0",
        )
    assert set(info.value.problems) == {
        "PUBLIC_URL: must be an http:// or https:// URL",
        "CONSOLE_IDENTITY_HEADER: must be an HTTP header name, e.g. "
        "X-Goog-Authenticated-User-Email",
        "APPROVAL_TIMEOUT_SECONDS: Input should be greater than 0",
    }
