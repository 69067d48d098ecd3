# Two commands matter: `make demo` and `make test`. Everything else is a helper.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test lint fmt demo bench eval clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements-aws.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy main agent intake tools eval config.py models.py state.py telemetry.py

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint infra
	$(BIN)/pytest

# Infra static-analysis tools (hadolint, shellcheck, checkov, python-hcl2) in their own venv:
# checkov pins many libraries and must never move the versions in .venv. python-hcl2 goes to
# its own --target dir because checkov's bc-python-hcl2 installs the same `hcl2` package.
VENV_INFRA := .venv-infra
INFRA_STAMP := $(VENV_INFRA)/.installed

.PHONY: infra

infra: $(INFRA_STAMP)

$(INFRA_STAMP): requirements-infra.txt
	$(PY) -m venv $(VENV_INFRA)
	grep -v '^python-hcl2==' requirements-infra.txt > $(VENV_INFRA)/tools.txt
	$(VENV_INFRA)/bin/pip install --quiet --disable-pip-version-check -r $(VENV_INFRA)/tools.txt
	$(VENV_INFRA)/bin/pip install --quiet --disable-pip-version-check --upgrade \
		--target $(VENV_INFRA)/hcl2 "$$(grep '^python-hcl2==' requirements-infra.txt)"
	touch $(INFRA_STAMP)

run: venv
	set -a; [ ! -f .env ] || . ./.env; set +a; $(BIN)/python -m main --host 127.0.0.1 --port $${PORT:-8080}

demo: venv
	$(BIN)/python -m demo $(ARGS)

bench: venv
	$(BIN)/python -m bench

# Replay evaluation (README "Replay evaluation"): options through ARGS, e.g.
# make eval ARGS="--model gpt-4o,gpt-4o-mini --iterations 3"
eval: venv
	$(BIN)/python -m eval $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
