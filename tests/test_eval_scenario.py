"""eval.scenario: the scenario format, validated with errors naming the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from eval.scenario import InvalidScenario, Scenario, load_scenario, load_scenarios

DATA = Path(__file__).parent / "data" / "eval"


def write(folder: Path, name: str, data: object) -> Path:
    path = folder / name / "scenario.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def valid() -> dict[str, object]:
    return yaml.safe_load((DATA / "pool-leak" / "scenario.yaml").read_text())


def test_the_test_scenarios_load_with_normalized_endpoints_and_actions() -> None:
    loaded = load_scenarios(DATA)
    assert [s.name for s in loaded.scenarios] == ["db-outage", "false-alarm", "pool-leak"]
    assert loaded.invalid == []
    pool = next(s for s in loaded.scenarios if s.name == "pool-leak")
    restart = pool.services["checkout"]["POST /ops/restart"]
    assert restart.after["GET /ops/status"].body == {"status": "healthy", "error_rate": 0.0}
    assert pool.expect.forbidden_actions == ["scale checkout", "POST checkout /ops/drain"]
    assert pool.limits()["checkout"].max_replicas == 6


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"expect": {"decision": "maybe"}}, "expect.decision"),
        (
            {"expect": {"decision": "resolve", "forbidden_actions": ["reboot it"]}},
            "expect.forbidden_actions[0]",
        ),
        ({"registry": "checkout|not-a-url|true"}, "registry"),
        ({"scaling_limits": "nosuch|1|2|application"}, "scaling_limits"),
        ({"services": {"checkout": {"FETCH /ops/status": {"status": 200}}}}, "services.checkout"),
        ({"services": {"checkout": {"GET /ops/status": {"status": 200, "bdy": {}}}}}, "bdy"),
        ({"services": {"ghost": {}}}, "services.ghost"),
        ({"alert": {"provider": "pagerduty", "payload": {}}}, "alert.provider"),
        (
            {"expect": {"decision": "resolve", "required_actions": ["POST ghost /ops/restart"]}},
            "ghost",
        ),
        ({"extra_field": 1}, "extra_field"),
    ],
)
def test_a_malformed_scenario_names_its_file_and_field(
    tmp_path: Path, change: dict[str, object], named: str
) -> None:
    path = write(tmp_path, "broken", {**valid(), **change})
    loaded = load_scenario(path)
    assert isinstance(loaded, InvalidScenario)
    assert str(path) in loaded.error
    assert named in loaded.error


def test_invalid_yaml_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad-yaml", "name: x\nalert: [unclosed\n")
    loaded = load_scenario(path)
    assert isinstance(loaded, InvalidScenario)
    assert "not valid YAML" in loaded.error
    assert "line" in loaded.error


def test_a_malformed_scenario_does_not_stop_the_others_loading(tmp_path: Path) -> None:
    write(tmp_path, "good", valid())
    write(tmp_path, "bad", {**valid(), "name": "bad", "expect": {}})
    loaded = load_scenarios(tmp_path)
    assert [s.name for s in loaded.scenarios] == ["pool-leak"]
    assert len(loaded.invalid) == 1
    assert "expect.decision" in loaded.invalid[0].error


def test_scenarios_are_selected_by_name_and_unknown_names_reported() -> None:
    loaded = load_scenarios(DATA, ["false-alarm", "nosuch"])
    assert [s.name for s in loaded.scenarios] == ["false-alarm"]
    assert [i.error for i in loaded.invalid] == ["no scenario named 'nosuch'"]


def test_scenario_model_rejects_a_registry_without_services() -> None:
    with pytest.raises(ValueError, match="registry"):
        Scenario.model_validate({**valid(), "registry": ""})
