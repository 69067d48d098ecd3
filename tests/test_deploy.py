"""Deployment artefacts: Dockerfile, terraform/, deploy.sh, .env.example.

Nothing here needs Docker or a cloud account: the linters (hadolint, shellcheck, checkov,
python-hcl2) come from `.venv-infra` (`make infra`), and deploy.sh runs either with --dry-run
or against fake gcloud/terraform/curl scripts that record their calls.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / ".venv-infra"
TERRAFORM = ROOT / "terraform"
DEPLOY = ROOT / "deploy.sh"
INPUTS = ROOT / "tests" / "data" / "deploy" / "inputs"
CONTRACT_MD = ROOT.parent / "shared" / "CONTRACT.md"

# CONTRACT §2: the four secrets, the database's (only with enable_database / --database), and
# every other variable with its default (None: required).
SECRET_ENV = {
    "LLM_API_KEY": "llm-api-key",
    "PAGERDUTY_API_TOKEN": "pagerduty-api-token",
    "OPS_AUTH_TOKEN": "ops-auth-token",
    "PAGERDUTY_ROUTING_KEY": "pagerduty-routing-key",
}
DATABASE_SECRET_ENV = {"DATABASE_URL": "database-url"}
CONTRACT_DEFAULTS: dict[str, str | None] = {
    "LLM_MODEL": "gpt-4o",
    "LLM_API_BASE_URL": "https://models.inference.ai.azure.com",
    "PAGERDUTY_ESCALATION_POLICY_ID": "",
    "PAGERDUTY_FROM_EMAIL": "",
    "PAGERDUTY_EVENTS_URL": "https://events.pagerduty.com/v2/enqueue",
    "PAGERDUTY_API_URL": "https://api.pagerduty.com",
    "WEBHOOK_AUTH_TOKEN": "",
    "SERVICE_REGISTRY": None,
    "SCALING_LIMITS": "",
    "SRE_PROMPT_PATH": "/app/WINDSURF_SRE.md",
    "INCIDENTS_DIR": "/app/incidents",
    "MAX_CONCURRENT_ALERTS": "3",
    "ALERT_QUEUE_TTL_SECONDS": "600",
    "MAX_QUEUE_SIZE": "1000",
    "DEDUP_WINDOW_SECONDS": "900",
    "RESOLVE_GRACE_SECONDS": "300",
    "PAGERDUTY_AUTO_RESOLVE": "true",
    "MAX_TOKENS_PER_INCIDENT": "100000",
    "MAX_TOKENS_PER_HOUR": "0",
    "AGENT_MAX_TURNS": "20",
    "AGENT_TIMEOUT_SECONDS": "300",
    "AGENT_MODE": "live",
    "APPROVAL_TIMEOUT_SECONDS": "900",
    "PUBLIC_URL": "",
    "CONSOLE_IDENTITY_HEADER": "",
    "TOOL_OUTPUT_MAX_CHARS": "8000",
    "MAX_TOOL_CALLS_PER_TURN": "16",
    "PAGERDUTY_MAX_EVENTS_PER_MINUTE": "60",
    "WEBHOOK_MAX_BODY_BYTES": "1048576",
    "SHUTDOWN_GRACE_SECONDS": "30",
    "CLOUD_PROVIDER": "none",
    "OPS_TIMEOUT_SECONDS": "10",
    "GCP_PROJECT_ID": "",
    "GCP_LOGGING_URL": "https://logging.googleapis.com",
    "GCP_MONITORING_URL": "https://monitoring.googleapis.com",
    "LOG_LEVEL": "INFO",
    "STATE_BACKEND": "memory",
    "RUN_LEASE_SECONDS": "30",
}
# Distinctive values, so a leak is found wherever it lands.
SECRET_VALUES = {
    "LLM_API_KEY": "sk-leakcheck-llm-7f3a9c",
    "PAGERDUTY_API_TOKEN": "pd-leakcheck-rest-51b2e8",
    "PAGERDUTY_ROUTING_KEY": "R0LEAKCHECKROUTING0000000000000A",
}
TARGET = "checkout-api"
SERVICE = f"sre-agent-{TARGET}"
INSTANCE = f"{SERVICE}-db"


def infra_tool(name: str) -> str:
    path = INFRA / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make infra` first")
    return str(path)


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    result = run([infra_tool("hadolint"), "--no-color", str(ROOT / "Dockerfile")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_wheels_and_runs_uvicorn_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", text, flags=re.M | re.I)
    assert [alias for _, alias in stages] == ["builder", "runtime"]
    assert "python:3.12-slim" in text
    assert "pip wheel" in text
    assert "--no-index" in text
    instructions = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in instructions if "requirements-dev" in line]
    assert re.search(r"useradd .*appuser", text, flags=re.S)
    incidents = text.index("chown appuser:appuser /app/incidents")
    assert incidents < text.index("\nUSER ")
    assert "COPY WINDSURF_SRE.md" in text
    for env in ("SRE_PROMPT_PATH=/app/WINDSURF_SRE.md", "INCIDENTS_DIR=/app/incidents"):
        assert env in text
    assert "PYTHONUNBUFFERED=1" in text
    assert re.search(r"HEALTHCHECK .*python.*/health", text, flags=re.S)
    assert 'exec uvicorn main:app --host 0.0.0.0 --port \\"${PORT:-8080}\\"' in text


def _requirements_step() -> str:
    """The builder's shell step that chooses the runtime requirements (before `pip wheel`)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", "\n")
    match = re.search(r"^RUN (case .*?esac)", text, flags=re.M | re.S)
    assert match, "no CLOUD_EXTRAS step in the Dockerfile"
    return match.group(1)


@pytest.mark.parametrize(
    ("extras", "botocore"), [("none", False), ("aws", True)], ids=["default", "aws"]
)
def test_dockerfile_cloud_extras_chooses_the_runtime_requirements(
    tmp_path: Path, extras: str, botocore: bool
) -> None:
    for name in ("requirements.txt", "requirements-aws.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    env = {**os.environ, "CLOUD_EXTRAS": extras}
    result = subprocess.run(
        ["sh", "-c", _requirements_step()], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    chosen = (tmp_path / "runtime.txt").read_text()
    assert (ROOT / "requirements.txt").read_text() in chosen
    assert ("botocore==" in chosen) is botocore


def test_dockerfile_refuses_an_unknown_cloud_extra(tmp_path: Path) -> None:
    env = {**os.environ, "CLOUD_EXTRAS": "azure"}
    result = subprocess.run(
        ["sh", "-c", _requirements_step()], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "CLOUD_EXTRAS must be none or aws" in result.stderr
    assert not (tmp_path / "runtime.txt").exists()


def test_dockerignore_keeps_tests_and_secrets_out_of_the_image() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "the context is an allowlist"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for unit in ("main", "agent", "tools", "config", "models", "intake", "state", "telemetry"):
        assert {f"{unit}.py", unit} <= allowed, unit
    assert not allowed & {"tests", ".env", ".venv", "bench", "demo", "docs", "terraform", ".git"}


# --- terraform/ ------------------------------------------------------------------------------

_PARSE_SCRIPT = """
import json, pathlib, sys
import hcl2
from hcl2.utils import SerializationOptions
options = SerializationOptions(strip_string_quotes=True, with_comments=False, explicit_blocks=False)
out = {p.name: hcl2.load(p.open(), serialization_options=options)
       for p in sorted(pathlib.Path(sys.argv[1]).glob("*.tf"))}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def tf() -> dict[str, dict[str, Any]]:
    """Every terraform/*.tf file parsed by python-hcl2 (in .venv-infra/hcl2)."""
    env = {**os.environ, "PYTHONPATH": str(INFRA / "hcl2")}
    result = run([infra_tool("python"), "-c", _PARSE_SCRIPT, str(TERRAFORM)], env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def blocks(tf: dict[str, dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    for parsed in tf.values():
        yield from parsed.get(kind, [])


def variables(tf: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: body for block in blocks(tf, "variable") for name, body in block.items()}


def resources(tf: dict[str, dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in (*blocks(tf, "resource"), *blocks(tf, "data")):
        found.update(block.get(kind, {}))
    return found


def locals_(tf: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {k: v for block in blocks(tf, "locals") for k, v in block.items()}


def container(tf: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (service,) = resources(tf, "google_cloud_run_v2_service").values()
    (template,) = service["template"]
    (box,) = template["containers"]
    return box


def env_entries(tf: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Env name -> value, or the secret_key_ref block for secret-sourced entries.

    A dynamic env iterates either a local map of plain values, or a conditional list of one
    secret id for one secret env var: its secret_key_ref then carries that `for_each`.
    """
    box = container(tf)
    entries: dict[str, Any] = {}
    for env in box.get("env", []):
        source = env.get("value_source")
        entries[env["name"]] = source[0]["secret_key_ref"][0] if source else env.get("value")
    for dynamic in box.get("dynamic", []):
        if "env" not in dynamic:
            continue
        for_each = dynamic["env"]["for_each"]
        local = re.fullmatch(r"\$\{local\.(\w+)\}", for_each)
        if local:
            entries.update(locals_(tf)[local.group(1)])
            continue
        (content,) = dynamic["env"]["content"]
        ref = content["value_source"][0]["secret_key_ref"][0]
        entries[content["name"]] = {**ref, "for_each": for_each}
    return entries


def when_database(expression: str) -> str:
    """The value of `var.enable_database ? X : Y` (as parsed) with the database on: X."""
    match = re.fullmatch(r"\$\{var\.enable_database \? (.+) : (.+)\}", expression)
    assert match, f"not conditional on var.enable_database: {expression}"
    return match.group(1)


def test_terraform_is_parsed_and_complete(tf: dict[str, dict[str, Any]]) -> None:
    assert set(tf) >= {"versions.tf", "variables.tf", "main.tf", "outputs.tf"}
    (versions,) = blocks(tf, "terraform")
    assert versions["required_version"]
    google = versions["required_providers"][0]["google"]
    assert google["source"] == "hashicorp/google"
    assert google["version"].startswith("~>")
    outputs = {name: body for block in blocks(tf, "output") for name, body in block.items()}
    assert {"service_url", "webhook_url"} <= set(outputs)
    assert outputs["webhook_url"]["value"].endswith("/webhook/gcp")


def test_every_var_used_is_declared_and_described(tf: dict[str, dict[str, Any]]) -> None:
    declared = variables(tf)
    used = set(re.findall(r"\bvar\.([A-Za-z_][\w-]*)", json.dumps(tf)))
    assert used - set(declared) == set()
    assert [n for n, body in declared.items() if not body.get("description", "").strip()] == []
    assert set(declared) - used == set(), "declared but unused"


def test_every_contract_variable_is_an_env_entry(tf: dict[str, dict[str, Any]]) -> None:
    entries = env_entries(tf)
    assert set(CONTRACT_DEFAULTS) | set(SECRET_ENV) | set(DATABASE_SECRET_ENV) <= set(entries)


def test_contract_variables_keep_the_contract_defaults(tf: dict[str, dict[str, Any]]) -> None:
    entries, declared = env_entries(tf), variables(tf)
    for name, default in CONTRACT_DEFAULTS.items():
        if isinstance(entries[name], dict):  # secret-sourced (WEBHOOK_AUTH_TOKEN)
            continue
        choice = re.fullmatch(r'\$\{var\.(\w+) \? "([^"]*)" : "([^"]*)"\}', entries[name])
        if choice:  # derived from a bool variable (STATE_BACKEND)
            flag, if_true, if_false = choice.groups()
            assert (if_true if declared[flag]["default"] else if_false) == default, name
            continue
        var = re.search(r"\bvar\.(\w+)", entries[name])
        assert var, f"{name} is not settable through a variable"
        body = declared[var.group(1)]
        if default is None:
            assert "default" not in body, f"{name} must be required"
        else:
            value = body.get("default")
            text = str(value).lower() if isinstance(value, bool) else str(value)  # HCL true
            assert text == default, name


def test_secrets_are_named_and_exist(tf: dict[str, dict[str, Any]]) -> None:
    entries = env_entries(tf)
    refs = {name: ref for name, ref in entries.items() if isinstance(ref, dict)}
    data = resources(tf, "google_secret_manager_secret")
    secret_ids_by_env = {}
    for name, ref in refs.items():
        match = re.fullmatch(
            r"\$\{(?:data\.)?google_secret_manager_secret\.(\w+)"
            r'(?:\[(?:"([^"]+)"|env\.value)\])?\.(?:secret_)?id\}',
            ref["secret"],
        )
        assert match, ref["secret"]
        source = data[match.group(1)]  # exists as a resource or data source
        secret_id = match.group(2) or source["secret_id"]
        if "for_each" in ref:  # a dynamic env: the id is its one element
            (secret_id,) = re.findall(r'"([^"]+)"', when_database(ref["for_each"]))
        local = re.fullmatch(r"\$\{local\.(\w+)\}", source.get("for_each", ""))
        if local:
            assert secret_id in re.findall(r'"([^"]+)"', str(locals_(tf)[local.group(1)]))
        secret_ids_by_env[name] = secret_id
    expected = SECRET_ENV | DATABASE_SECRET_ENV
    assert set(secret_ids_by_env.values()) == set(expected.values())
    for name, secret in expected.items():
        assert secret_ids_by_env[name] == secret
    assert secret_ids_by_env["WEBHOOK_AUTH_TOKEN"] == "ops-auth-token"


def test_the_database_secret_is_read_only_with_the_database(
    tf: dict[str, dict[str, Any]],
) -> None:
    secret_ids = locals_(tf)["secret_ids"]
    always, _, optional = secret_ids.partition("var.enable_database")
    assert set(re.findall(r'"([^"]+)"', always)) == set(SECRET_ENV.values())
    assert re.match(r' \? \["database-url"\] : \[\]', optional), secret_ids
    database_url = env_entries(tf)["DATABASE_URL"]
    assert when_database(database_url["for_each"]) == '["database-url"]'
    assert database_url["version"] == "latest"


def test_secret_access_is_granted_per_secret_not_per_project(
    tf: dict[str, dict[str, Any]],
) -> None:
    (grant,) = resources(tf, "google_secret_manager_secret_iam_member").values()
    assert grant["role"] == "roles/secretmanager.secretAccessor"
    project_grants = json.dumps(resources(tf, "google_project_iam_member"))
    project_roles = set(re.findall(r"roles/[\w.]+", json.dumps(locals_(tf)) + project_grants))
    assert project_roles == {
        "roles/logging.viewer",
        "roles/monitoring.viewer",
        "roles/cloudsql.client",
    }
    assert not resources(tf, "google_project_iam_binding")


def test_cloudsql_client_is_granted_only_with_the_database_on_its_instance(
    tf: dict[str, dict[str, Any]],
) -> None:
    grant = resources(tf, "google_project_iam_member")["cloudsql_client"]
    assert grant["role"] == "roles/cloudsql.client"
    assert when_database(grant["count"]) == "1"
    assert grant["member"] == "serviceAccount:${google_service_account.runtime.email}"
    (condition,) = grant["condition"]
    assert 'resource.service == "sqladmin.googleapis.com"' in condition["expression"]
    instance = "projects/${var.project_id}/instances/${local.database_instance_name}"
    assert f'resource.name == "{instance}"' in condition["expression"]
    assert resources(tf, "google_sql_database_instance")["state"]["name"] == (
        "${local.database_instance_name}"
    )


def test_cloud_run_runs_one_always_on_instance_by_default(tf: dict[str, dict[str, Any]]) -> None:
    (service,) = resources(tf, "google_cloud_run_v2_service").values()
    (scaling,) = service["template"][0]["scaling"]
    assert scaling["max_instance_count"] == "${var.max_instances}"
    assert scaling["min_instance_count"] == "${var.min_instance_count}"
    assert str(variables(tf)["max_instances"]["default"]) == "1"
    assert str(variables(tf)["min_instance_count"]["default"]) == "1"
    box = container(tf)
    assert box["resources"][0]["cpu_idle"] is False
    for probe in ("startup_probe", "liveness_probe"):
        assert box[probe][0]["http_get"][0]["path"] == "/health"
    (invoker,) = resources(tf, "google_cloud_run_v2_service_iam_member").values()
    assert (invoker["role"], invoker["member"]) == ("roles/run.invoker", "allUsers")


def preconditions(tf: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    (service,) = resources(tf, "google_cloud_run_v2_service").values()
    (lifecycle,) = service["lifecycle"]
    return lifecycle["precondition"]


def test_several_instances_are_refused_without_the_database(
    tf: dict[str, dict[str, Any]],
) -> None:
    conditions = {check["condition"]: check["error_message"] for check in preconditions(tf)}
    message = conditions["${var.max_instances == 1 || var.enable_database}"]
    assert "enable_database" in message
    assert "${var.min_instance_count <= var.max_instances}" in conditions
    assert variables(tf)["enable_database"]["default"] is False


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        ({}, None),
        ({"max_instances": "3"}, "needs enable_database = true"),
        ({"max_instances": "3", "enable_database": "true"}, None),
        ({"max_instances": "0", "enable_database": "true"}, "whole number >= 1"),
        ({"min_instance_count": "2"}, "must not exceed max_instances"),
        ({"min_instance_count": "2", "max_instances": "2", "enable_database": "true"}, None),
    ],
    ids=["default", "3-memory", "3-postgres", "0", "min-over-max", "2-warm-postgres"],
)
def test_terraform_plans_the_scaling_rules(
    tf: dict[str, dict[str, Any]], tmp_path: Path, settings: dict[str, str], refused: str | None
) -> None:
    """variables.tf and the service's preconditions, planned by terraform with no provider."""
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed")
    shutil.copy(TERRAFORM / "variables.tf", tmp_path / "variables.tf")
    checks = "".join(
        "    precondition {\n"
        f"      condition     = {check['condition'][2:-1]}\n"
        f"      error_message = {json.dumps(check['error_message'])}\n"
        "    }\n"
        for check in preconditions(tf)
    )
    stub = f'resource "terraform_data" "service" {{\n  lifecycle {{\n{checks}  }}\n}}\n'
    (tmp_path / "main.tf").write_text(stub)
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1"}
    required = {"project_id": "p", "image": "i", "service_registry": "a|http://a|true"}
    args = [f"-var={name}={value}" for name, value in (required | settings).items()]
    tf_cmd = ["terraform", f"-chdir={tmp_path}"]
    assert run([*tf_cmd, "init", "-input=false", "-no-color"], env=env).returncode == 0
    result = run([*tf_cmd, "plan", "-input=false", "-no-color", *args], env=env)
    if refused is None:
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        assert result.returncode != 0
        assert refused in " ".join(result.stderr.split())


def test_database_is_an_optional_protected_postgres_instance(
    tf: dict[str, dict[str, Any]],
) -> None:
    instance = resources(tf, "google_sql_database_instance")["state"]
    assert when_database(instance["count"]) == "1"
    assert re.fullmatch(r"POSTGRES_1[56]", instance["database_version"])
    assert instance["region"] == "${var.region}"
    assert instance["deletion_protection"] is True
    (settings,) = instance["settings"]
    assert settings["tier"] == "${var.database_tier}"
    assert settings["deletion_protection_enabled"] is True
    (backup,) = settings["backup_configuration"]
    assert backup["enabled"] is True
    assert backup["point_in_time_recovery_enabled"] is True
    (network,) = settings["ip_configuration"]
    assert "authorized_networks" not in network
    assert "dynamic" not in network
    assert network["ssl_mode"] == "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    assert network["server_ca_mode"] == "GOOGLE_MANAGED_INTERNAL_CA"
    assert settings["connector_enforcement"] == "REQUIRED"
    flags = {flag["name"]: flag["value"] for flag in settings["database_flags"]}
    for flag in ("log_checkpoints", "log_connections", "log_disconnections", "log_lock_waits"):
        assert flags[flag] == "on", flag
    database = resources(tf, "google_sql_database")["state"]
    assert database["name"] == "sre_agent"
    assert when_database(database["count"]) == "1"
    assert database["instance"] == "${google_sql_database_instance.state[0].name}"


def test_with_the_database_the_service_gets_its_socket_and_state_backend(
    tf: dict[str, dict[str, Any]],
) -> None:
    connections = locals_(tf)["database_connections"]
    assert connections == "${google_sql_database_instance.state[*].connection_name}"
    (service,) = resources(tf, "google_cloud_run_v2_service").values()
    (template,) = service["template"]
    (volumes,) = [d["volumes"] for d in template["dynamic"] if "volumes" in d]
    assert volumes["for_each"] == "${local.database_connections}"
    (volume,) = volumes["content"]
    assert volume["name"] == "cloudsql"
    assert volume["cloud_sql_instance"][0]["instances"] == ["${volumes.value}"]
    (mounts,) = [d["volume_mounts"] for d in container(tf)["dynamic"] if "volume_mounts" in d]
    assert mounts["for_each"] == "${local.database_connections}"
    assert mounts["content"][0] == {"name": "cloudsql", "mount_path": "/cloudsql"}
    entries = env_entries(tf)
    assert when_database(entries["STATE_BACKEND"]) == '"postgres"'
    assert entries["RUN_LEASE_SECONDS"] == "${tostring(var.run_lease_seconds)}"
    assert isinstance(entries["DATABASE_URL"], dict), "DATABASE_URL comes from a secret"
    for needed in ("cloudsql_client", "state"):
        assert any(needed in dep for dep in service["depends_on"]), needed
    outputs = {name: body for block in blocks(tf, "output") for name, body in block.items()}
    connection = outputs["database_connection_name"]["value"]
    assert connection == "${one(google_sql_database_instance.state[*].connection_name)}"


def test_terraform_is_formatted() -> None:
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed")
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1"}
    result = run(["terraform", "fmt", "-check", "-diff", str(TERRAFORM)], env=env)
    assert result.returncode == 0, result.stdout + result.stderr


INLINE_SKIP = re.compile(r"#\s*checkov:skip=(CKV\w+)(.*)$", flags=re.M)


@pytest.mark.parametrize("database", [False, True], ids=["memory", "postgres"])
def test_checkov_passes_with_only_documented_skips(tmp_path: Path, database: bool) -> None:
    """Checkov evaluates `count`: the Cloud SQL resources are checked only when enabled."""
    config = (ROOT / ".checkov.yaml").read_text().splitlines()
    for index, line in enumerate(config):
        if re.match(r"\s*-\s*CKV", line):
            assert config[index - 1].strip().startswith("#"), f"no reason for {line.strip()}"
    inline = [m for f in TERRAFORM.glob("*.tf") for m in INLINE_SKIP.finditer(f.read_text())]
    assert {m.group(1) for m in inline} == {"CKV_GCP_60", "CKV_GCP_79"}
    for match in inline:
        assert re.match(r":\s*\S.{30,}", match.group(2)), f"no reason for {match.group(1)}"
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    cmd = [infra_tool("checkov"), "--config-file", ".checkov.yaml"]
    if database:
        (tmp_path / "db.tfvars").write_text("enable_database = true\nmax_instances = 3\n")
        cmd += ["--var-file", str(tmp_path / "db.tfvars")]
    result = run(cmd, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Failed checks: 0" in result.stdout
    passed = int(re.search(r"Passed checks: (\d+)", result.stdout).group(1))
    assert passed > (20 if database else 0), "the database's checks did not run"


def test_contract_table_matches_this_test() -> None:
    if not CONTRACT_MD.exists():
        pytest.skip("shared/CONTRACT.md is not beside the repository")
    section = CONTRACT_MD.read_text().split("## 2.")[1].split("## 3.")[0]
    names = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", section, flags=re.M))
    assert names == set(CONTRACT_DEFAULTS) | set(SECRET_ENV) | set(DATABASE_SECRET_ENV)


def test_env_example_documents_every_contract_variable() -> None:
    text = (ROOT / ".env.example").read_text()
    names = (*CONTRACT_DEFAULTS, *SECRET_ENV, *DATABASE_SECRET_ENV)
    for name in (*names, "OTEL_EXPORTER_OTLP_ENDPOINT"):
        assert re.search(rf"^#? ?{name}=", text, flags=re.M), name
    assert re.search(r"^SRE_PROMPT_PATH=\./WINDSURF_SRE\.md$", text, flags=re.M)
    assert re.search(r"^INCIDENTS_DIR=\./incidents$", text, flags=re.M)


# --- deploy.sh -------------------------------------------------------------------------------

FAKE_GCLOUD = r"""#!/usr/bin/env bash
# Fake gcloud: records argv, keeps secrets/repositories/SQL users as files under $FAKE_STATE
# (a SQL user's file holds the --flags-file it was given on stdin).
printf 'gcloud' >>"$FAKE_LOG"; printf '\t%s' "$@" >>"$FAKE_LOG"; printf '\n' >>"$FAKE_LOG"
state=$FAKE_STATE
case "$1 $2" in
  "secrets describe") [[ -e $state/secret-$3 ]] || { echo "NOT_FOUND: $3" >&2; exit 1; } ;;
  "secrets create") [[ ! -e $state/secret-$3 ]] || exit 1; cat >"$state/secret-$3" ;;
  "secrets versions")
    case $3 in
      add)
        [[ -e $state/secret-$4 ]] || exit 1; cat >"$state/secret-$4"; echo "$4" >>"$state/added" ;;
      access) [[ $5 == --secret ]] && cat "$state/secret-$6" ;;
    esac ;;
  "sql users")
    case $3 in
      list) cat "$state/sql-users" 2>/dev/null ;;
      create)
        [[ ! -e $state/sql-user-$4 ]] || exit 1; cat >"$state/sql-user-$4"
        echo "$4" >>"$state/sql-users" ;;
      set-password) [[ -e $state/sql-user-$4 ]] || exit 1; cat >"$state/sql-user-$4" ;;
    esac ;;
  "artifacts repositories")
    case $3 in
      describe) [[ -e $state/repo-$4 ]] || exit 1 ;;
      create) touch "$state/repo-$4" ;;
    esac ;;
  "builds submit")
    while (($#)); do [[ $1 == --config ]] && cp "$2" "$state/cloudbuild.yaml"; shift; done ;;
esac
exit 0
"""

FAKE_TERRAFORM = r"""#!/usr/bin/env bash
printf 'terraform' >>"$FAKE_LOG"; printf '\t%s' "$@" >>"$FAKE_LOG"; printf '\n' >>"$FAKE_LOG"
case "$2 $4" in
  "output service_url") printf 'https://sre-agent-checkout-api-x1.a.run.app' ;;
  "output webhook_url") printf 'https://sre-agent-checkout-api-x1.a.run.app/webhook/gcp' ;;
esac
exit 0
"""

FAKE_CURL = r"""#!/usr/bin/env bash
printf 'curl' >>"$FAKE_LOG"; printf '\t%s' "$@" >>"$FAKE_LOG"; printf '\n' >>"$FAKE_LOG"
printf '{"status": "ok"}'
"""


class Fakes:
    """Fake gcloud/terraform/curl on PATH, recording every call."""

    def __init__(self, root: Path) -> None:
        self.bin, self.state, self.log = root / "bin", root / "state", root / "calls.log"
        self.bin.mkdir()
        self.state.mkdir()
        self.log.touch()
        for name, body in (("gcloud", FAKE_GCLOUD), ("terraform", FAKE_TERRAFORM)):
            (self.bin / name).write_text(body)
        (self.bin / "curl").write_text(FAKE_CURL)
        for tool in self.bin.iterdir():
            tool.chmod(0o755)

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
        base.pop("SERVICE_REGISTRY", None)
        path = f"{self.bin}:/usr/local/bin:/usr/bin:/bin"
        return {**base, "PATH": path, "FAKE_LOG": str(self.log), "FAKE_STATE": str(self.state)}

    def calls(self) -> list[list[str]]:
        return [line.split("\t") for line in self.log.read_text().splitlines()]

    def reset_log(self) -> None:
        self.log.write_text("")


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    return Fakes(tmp_path)


def deploy(
    fakes: Fakes, *args: str, inputs: Path = INPUTS, secrets: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**fakes.env(), **(SECRET_VALUES if secrets is None else secrets)}
    cmd = [str(DEPLOY), str(inputs), "--gcp-project", "proj-1"]
    cmd += ["--service-url", "https://checkout.example.com", "--region", "europe-west1", *args]
    return run(cmd, env={**env, "IMAGE_TAG": "t1"})


def assert_no_secret(text: str, *extra: str) -> None:
    for value in (*SECRET_VALUES.values(), *extra):
        assert value not in text


def test_deploy_passes_shellcheck() -> None:
    result = run([infra_tool("shellcheck"), "--severity=style", str(DEPLOY)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_help_prints_usage() -> None:
    result = run([str(DEPLOY), "--help"])
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: ./deploy.sh <inputs-dir> --gcp-project")
    for option in ("--service-url", "--region", "--dry-run", "--database", "--max-instances"):
        assert option in result.stdout


def test_dry_run_prints_every_step_masks_secrets_and_calls_nothing(fakes: Fakes) -> None:
    result = deploy(fakes, "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    commands = [line for line in out.splitlines() if line.startswith("+ ")]
    for secret in SECRET_ENV.values():
        assert any(f"gcloud secrets create {secret} " in c for c in commands), secret
        assert any(f"gcloud secrets versions add {secret} " in c for c in commands), secret
    assert any(c.startswith("+ gcloud services enable run.googleapis.com") for c in commands)
    assert any("gcloud artifacts repositories create sre-agent " in c for c in commands)
    image = f"europe-west1-docker.pkg.dev/proj-1/sre-agent/{SERVICE}:t1"
    assert any(c.startswith("+ gcloud builds submit") and image in c for c in commands)
    apply = next(c for c in commands if " apply -auto-approve" in c)
    assert f"-var image={image}" in apply
    assert r"-var service_registry=checkout-api\|https://checkout.example.com\|false" in apply
    assert any(c.startswith("+ curl") and c.endswith("/health") for c in commands)
    assert any(c.startswith("+ curl") and c.endswith("/ops/status") for c in commands)
    assert "'****'" in out
    assert_no_secret(out + result.stderr)
    assert fakes.calls() == [], "--dry-run must not call any tool"


@pytest.mark.parametrize(
    "line",
    [
        "**Target Repository:** my-service",
        "Target Repository: my-service",
        "- **Target Repository**: `org/my-service`",
    ],
)
def test_scope_field_forms_and_env_file_are_accepted(
    fakes: Fakes, tmp_path: Path, line: str
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "scope.md").write_text(f"# Scope\n\n{line}\n")
    dotenv = "".join(f'{k}="{v}"\n' for k, v in SECRET_VALUES.items())
    (inputs / ".env").write_text(f"# from .env\n{dotenv}")
    result = deploy(fakes, "--dry-run", inputs=inputs, secrets={})
    assert result.returncode == 0, result.stderr
    assert "workspace select -or-create sre-agent-my-service" in result.stdout
    assert_no_secret(result.stdout + result.stderr)


def test_missing_scope_file_is_a_clear_error(fakes: Fakes, tmp_path: Path) -> None:
    result = deploy(fakes, "--dry-run", inputs=tmp_path)
    assert result.returncode != 0
    assert "scope.md not found" in result.stderr


def test_scope_without_target_repository_is_a_clear_error(fakes: Fakes, tmp_path: Path) -> None:
    (tmp_path / "scope.md").write_text("# Scope\n\n**Owner:** someone\n")
    result = deploy(fakes, "--dry-run", inputs=tmp_path)
    assert result.returncode != 0
    assert "no 'Target Repository' field" in result.stderr


def test_missing_variables_and_tools_are_listed_together(fakes: Fakes, tmp_path: Path) -> None:
    secrets = {k: v for k, v in SECRET_VALUES.items() if k != "LLM_API_KEY"}
    result = deploy(fakes, "--dry-run", secrets=secrets)
    assert result.returncode != 0
    assert "LLM_API_KEY is not set" in result.stderr
    # Without --dry-run, missing tools join the same single message.
    bare = tmp_path / "bare"
    bare.mkdir()
    for tool in ("bash", "dirname"):
        (bare / tool).symlink_to(shutil.which(tool))
    env = {**fakes.env(), **secrets, "PATH": str(bare)}
    cmd = [str(DEPLOY), str(INPUTS), "--gcp-project", "p", "--service-url", "http://x"]
    result = run(cmd, env=env)
    assert result.returncode != 0
    for missing in ("LLM_API_KEY", "gcloud", "terraform", "curl"):
        assert missing in result.stderr
    assert result.stderr.count("error:") == 1


URL = f"https://{SERVICE}-x1.a.run.app"


@pytest.fixture
def first_deploy(fakes: Fakes) -> subprocess.CompletedProcess[str]:
    """A full (fake) deployment into an empty project, OPS_AUTH_TOKEN left to be generated."""
    result = deploy(fakes)
    assert result.returncode == 0, result.stderr
    return result


def test_first_deploy_stores_secrets_on_stdin_only(
    fakes: Fakes, first_deploy: subprocess.CompletedProcess[str]
) -> None:
    creates = [c[3:] for c in fakes.calls() if c[:3] == ["gcloud", "secrets", "create"]]
    flags = ["--project", "proj-1", "--replication-policy=automatic", "--data-file=-"]
    assert sorted(creates) == sorted([secret, *flags] for secret in SECRET_ENV.values())
    for name, value in SECRET_VALUES.items():
        assert (fakes.state / f"secret-{SECRET_ENV[name]}").read_text() == value
    token = (fakes.state / "secret-ops-auth-token").read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", token), "OPS_AUTH_TOKEN is generated when absent"
    assert_no_secret(first_deploy.stdout + first_deploy.stderr + fakes.log.read_text(), token)


def test_first_deploy_builds_applies_and_verifies(
    fakes: Fakes, first_deploy: subprocess.CompletedProcess[str]
) -> None:
    calls = fakes.calls()
    assert ["gcloud", "artifacts", "repositories", "create", "sre-agent"] in [c[:5] for c in calls]
    assert ["gcloud", "builds", "submit"] in [c[:3] for c in calls]
    assert "DOCKER_BUILDKIT=1" in (fakes.state / "cloudbuild.yaml").read_text()
    assert [c[2] for c in calls if c[0] == "terraform"][:3] == ["init", "workspace", "apply"]
    apply = next(c for c in calls if c[:3] == ["terraform", f"-chdir={TERRAFORM}", "apply"])
    assert "service_registry=checkout-api|https://checkout.example.com|false" in apply
    assert f"service_name={SERVICE}" in apply
    assert "cloud_provider=gcp" in apply
    curls = [c[-1] for c in calls if c[0] == "curl"]
    assert curls == [f"{URL}/health", f"{URL}/ops/status"]
    assert f"Webhook URL: {URL}/webhook/gcp" in first_deploy.stdout


@pytest.mark.usefixtures("first_deploy")
def test_redeploy_adds_versions_and_keeps_the_generated_token(fakes: Fakes) -> None:
    token = (fakes.state / "secret-ops-auth-token").read_text()
    fakes.reset_log()
    second = deploy(fakes)
    assert second.returncode == 0, second.stderr
    again = ["\t".join(c) for c in fakes.calls()]
    assert [c for c in again if "secrets\tcreate" in c or "repositories\tcreate" in c] == []
    added = (fakes.state / "added").read_text().split()
    assert sorted(added) == sorted(SECRET_ENV[name] for name in SECRET_VALUES)
    assert (fakes.state / "secret-ops-auth-token").read_text() == token
    assert any("\tapply\t-auto-approve" in c for c in again)
    assert_no_secret(second.stdout + second.stderr + fakes.log.read_text(), token)


# --- deploy.sh --database --------------------------------------------------------------------

DB_TARGETS = [
    "-target=google_sql_database_instance.state",
    "-target=google_sql_database.state",
]
SOCKET = f"/cloudsql/proj-1:europe-west1:{INSTANCE}"


def test_dry_run_with_the_database_orders_the_steps_and_masks_the_password(
    fakes: Fakes,
) -> None:
    lease = {**SECRET_VALUES, "RUN_LEASE_SECONDS": "45"}
    result = deploy(fakes, "--dry-run", "--database", "--max-instances", "3", secrets=lease)
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    enable = next(c for c in commands if c.startswith("+ gcloud services enable"))
    assert "sqladmin.googleapis.com" in enable

    def index(fragment: str) -> int:
        return next(i for i, c in enumerate(commands) if fragment in c)

    first_apply = index(" apply -auto-approve -input=false " + " ".join(DB_TARGETS))
    user = (
        f"gcloud sql users create sre_agent --instance {INSTANCE} --project proj-1 --flags-file=-"
    )
    masked = "+ printf '%s' '****' | "
    assert f"{masked}{user}" in commands
    assert f"{masked}{user.replace('create', 'set-password')}" in commands
    for secret in ("secrets create database-url ", "secrets versions add database-url "):
        assert any(c.startswith(f"{masked}gcloud {secret}") for c in commands), secret
    full_apply = max(i for i, c in enumerate(commands) if " apply -auto-approve" in c)
    assert first_apply < index("secrets create database-url") < full_apply
    assert first_apply < index(user) < full_apply
    assert "-target" not in commands[full_apply]
    assert "-var run_lease_seconds=45" in commands[full_apply]
    for var in ("enable_database=true", f"database_instance_name={INSTANCE}", "max_instances=3"):
        assert f"-var {var}" in commands[first_apply], var
        assert f"-var {var}" in commands[full_apply], var
    assert f"postgresql://sre_agent:****@/sre_agent?host={SOCKET}" in result.stdout
    assert_no_secret(result.stdout + result.stderr)
    assert fakes.calls() == [], "--dry-run must not call any tool"


def test_without_the_database_nothing_of_it_is_deployed(fakes: Fakes) -> None:
    result = deploy(fakes, "--dry-run")
    assert result.returncode == 0, result.stderr
    for absent in ("sqladmin", "sql users", "database-url", "enable_database", "-target"):
        assert absent not in result.stdout, absent


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-instances", "3"], "--max-instances 3 needs --database"),
        (["--max-instances", "0", "--database"], "--max-instances must be a whole number >= 1"),
        (["--max-instances=two", "--database"], "--max-instances must be a whole number >= 1"),
        (["--rotate-database-password"], "--rotate-database-password needs --database"),
    ],
    ids=["3-without-database", "0", "not-a-number", "rotate-without-database"],
)
def test_database_options_are_checked_before_anything_runs(
    fakes: Fakes, args: list[str], message: str
) -> None:
    result = deploy(fakes, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stderr.count("error:") == 1
    assert fakes.calls() == []


def sql_user_password(fakes: Fakes) -> str:
    """The password the fake SQL user was given, from its --flags-file."""
    flags = (fakes.state / "sql-user-sre_agent").read_text()
    match = re.fullmatch(r'--password: "([0-9a-f]{64})"', flags)
    assert match, "the password goes in a flags file on stdin, as a quoted YAML string"
    return match.group(1)


def stored_database_url(fakes: Fakes) -> str:
    return (fakes.state / "secret-database-url").read_text()


@pytest.fixture
def database_deploy(fakes: Fakes) -> subprocess.CompletedProcess[str]:
    """A full (fake) deployment with --database into an empty project."""
    result = deploy(fakes, "--database", "--max-instances", "3")
    assert result.returncode == 0, result.stderr
    return result


def test_first_database_deploy_gives_user_and_secret_one_new_password(
    fakes: Fakes, database_deploy: subprocess.CompletedProcess[str]
) -> None:
    password = sql_user_password(fakes)
    url = f"postgresql://sre_agent:{password}@/sre_agent?host={SOCKET}"
    assert stored_database_url(fakes) == url
    calls = fakes.calls()
    applies = [c for c in calls if c[:3] == ["terraform", f"-chdir={TERRAFORM}", "apply"]]
    assert len(applies) == 2
    assert applies[0][5:7] == DB_TARGETS, "the instance first, alone"
    assert not any(arg.startswith("-target") for arg in applies[1])
    create = ["gcloud", "sql", "users", "create", "sre_agent", "--instance", INSTANCE]
    assert create in [c[:7] for c in calls]
    order = [" ".join(c[:4]) for c in calls]
    steps = [calls.index(applies[0]), order.index("gcloud secrets create database-url")]
    steps += [order.index("gcloud sql users create"), calls.index(applies[1])]
    assert steps == sorted(steps), "instance, secret, user, then everything"
    assert "max_instances=3" in applies[1]
    assert_no_secret(
        database_deploy.stdout + database_deploy.stderr + fakes.log.read_text(), password
    )


@pytest.mark.usefixtures("database_deploy")
def test_database_redeploy_keeps_the_password(fakes: Fakes) -> None:
    password, url = sql_user_password(fakes), stored_database_url(fakes)
    fakes.reset_log()
    again = deploy(fakes, "--database", "--max-instances", "3")
    assert again.returncode == 0, again.stderr
    assert (sql_user_password(fakes), stored_database_url(fakes)) == (password, url)
    calls = [" ".join(c[:5]) for c in fakes.calls()]
    assert "gcloud sql users set-password sre_agent" in calls
    assert not [c for c in calls if "database-url" in c and ("create" in c or " add " in c)]
    assert_no_secret(again.stdout + again.stderr + fakes.log.read_text(), password)


@pytest.mark.usefixtures("database_deploy")
def test_a_user_left_behind_gets_the_stored_password_again(fakes: Fakes) -> None:
    """A run stopped between the secret and the user: the next run makes them agree."""
    password = sql_user_password(fakes)
    (fakes.state / "sql-user-sre_agent").write_text('--password: "stale"')
    again = deploy(fakes, "--database")
    assert again.returncode == 0, again.stderr
    assert sql_user_password(fakes) == password


@pytest.mark.usefixtures("database_deploy")
def test_rotate_database_password_sets_a_new_one_in_both_places(fakes: Fakes) -> None:
    old = sql_user_password(fakes)
    fakes.reset_log()
    rotated = deploy(fakes, "--database", "--rotate-database-password")
    assert rotated.returncode == 0, rotated.stderr
    new = sql_user_password(fakes)
    assert new != old
    assert stored_database_url(fakes) == f"postgresql://sre_agent:{new}@/sre_agent?host={SOCKET}"
    assert "database-url" in (fakes.state / "added").read_text().split()
    assert_no_secret(rotated.stdout + rotated.stderr + fakes.log.read_text(), old, new)


def test_sample_inputs_name_the_target() -> None:
    text = (INPUTS / "scope.md").read_text()
    assert f"**Target Repository:** {TARGET}" in text


def test_deployment_doc_covers_every_platform_and_the_report_filter() -> None:
    text = (ROOT / "docs" / "deployment.md").read_text()
    for heading in ("Docker", "Deploying to Cloud Run", "Alert flow", "IAM"):
        assert re.search(rf"^## \d\. {heading}$", text, flags=re.M), heading
    for provider in ("gcp", "datadog", "newrelic", "alertmanager", "grafana", "cloudwatch"):
        assert f"/webhook/{provider}" in text, provider
    assert 'jsonPayload.message="INCIDENT_REPORT"' in text
    assert "SubscribeURL" in text


def test_deployment_doc_explains_the_database_option() -> None:
    text = (ROOT / "docs" / "deployment.md").read_text()
    section = text.split("### PostgreSQL (several replicas)\n", 1)[1].split("\n## ", 1)[0]
    for needed in ("--database", "--max-instances", "--rotate-database-password", "database-url"):
        assert needed in section, needed
    assert "roles/cloudsql.client" in section
    assert "MAX_CONCURRENT_ALERTS" in section
