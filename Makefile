# One command each; every one is a complete set-up from a fresh clone (see README.md).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  := $(PY) deploy/local/stack.py

.PHONY: install lock run demo test test-unit docs lint bench bench-eligibility chaos soak fuzz clean

# The virtualenv is rebuilt whenever pyproject.toml or the lock file changes.
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# requirements.lock: what '.[dev]' resolves to in a fresh virtualenv, frozen (run after changing a pin).
LOCK_VENV := .local/lock-venv
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q -e '.[dev]'
	{ sed -n '/^#/p;/^[^#]/q' requirements.lock; $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf $(LOCK_VENV)

run: install
	$(STACK) --services --mail

demo: install
	$(STACK) --services --mail -- $(PY) -m deploy.local.demo

test: install
	bash deploy/k8s/install-tools.sh
	$(STACK) -- $(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

docs: install
	$(PY) -m tools.asyncapi > docs/asyncapi.yaml
	$(PY) -m tools.settings_doc --write
	$(PY) -m services.eligibility.rules_doc --write
	$(PY) -m shared.acl --write

# ruff (rules and formatting) and mypy (strict; its files and overrides are pyproject.toml's [tool.mypy]).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Benchmarks print their figures (and write bench/results/*.json); they are not tests.
bench: install
	$(STACK) -- $(PY) bench/pipeline_bench.py $(BENCH_ARGS)

bench-eligibility: install
	$(PY) bench/eligibility_bench.py

# 10,000 applications while services, Kafka and PostgreSQL are killed; owns its own Kafka and PostgreSQL.
chaos: install
	$(PY) -m deploy.local.chaos $(CHAOS_ARGS)

# The pipeline at half the benched rate for 30 minutes (SOAK_ARGS="--minutes 2 --warmup 1"); fails if
# memory grows > 10 % after warm-up or a consumer lag keeps growing. JSON + PNG in bench/results/.
soak: install
	$(STACK) -- $(PY) -m deploy.local.soak $(SOAK_ARGS)

fuzz: install
	$(STACK) -- $(PY) bench/fuzz_intake.py --payloads 10000 $(FUZZ_ARGS)

clean:
	rm -rf $(VENV) .local
