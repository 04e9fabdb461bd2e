# Two commands on a fresh Debian/Ubuntu machine: `make run` (or `make demo`) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
ARGS   ?=
APT    := DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: run demo test lint format typecheck lock mixin dashboards check-mixin check-dashboards bench soak tools venv clean

run: venv ## Watch mempool.space (flags via ARGS="--threshold-btc 500 ...")
	$(PY) -m exporter run $(ARGS)

demo: venv ## Offline: the built-in simulated mempool on loopback
	$(PY) -m exporter demo $(ARGS)

test: venv tools ## Every test, against real DuckDB, sockets, Prometheus and Alertmanager
	$(PY) -m pytest $(ARGS)

lint: venv typecheck ## ruff and mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: venv ## mypy --strict on the package and the mixin
	$(PY) -m mypy

format: venv
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

lock: venv ## Regenerate requirements.lock (pinned, hashed dependencies for the image build)
	$(PY) -m piptools compile --quiet --generate-hashes --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file=requirements.lock pyproject.toml

mixin: venv ## Regenerate rules, dashboards and Kubernetes objects from mixin/ (CONFIG=my.yml OUT=dir)
	$(PY) -m mixin $(if $(CONFIG),--config $(CONFIG)) $(if $(OUT),--out $(OUT))

dashboards: mixin

check-mixin: mixin ## Fail when the committed generated files differ from mixin/'s output
	git diff --exit-code -- prometheus/rules grafana/dashboards deploy/kubernetes

check-dashboards: check-mixin

bench: venv ## Benchmarks; their figures go in the README
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/notify_latency.py
	$(PY) benchmarks/known_txids.py
	$(PY) benchmarks/esplora_startup.py

soak: venv ## 10 minutes at 5,000 tx/s against the simulator; prints RSS over time (ARGS="--minutes 2")
	$(PY) benchmarks/soak.py $(ARGS)

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "error: Python 3.11 or newer is needed as $(PYTHON)"; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || $(MAKE) --no-print-directory apt-venv
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

.PHONY: apt-venv
apt-venv:
	@if [ "$$(id -u)" = 0 ]; then \
		$(APT) update -qq && $(APT) install -y -qq python3-venv python3-pip; \
	else \
		echo "error: Python's venv module is missing: sudo apt-get install python3-venv"; exit 1; \
	fi

tools: ## Debian's prometheus (promtool) and prometheus-alertmanager (amtool)
	@missing=; for b in promtool prometheus amtool prometheus-alertmanager; do \
		command -v $$b >/dev/null 2>&1 || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian's prometheus and prometheus-alertmanager (missing:$$missing)"; \
			$(APT) update -qq && $(APT) install -y -qq --no-install-recommends \
				prometheus prometheus-alertmanager >/dev/null; \
		else \
			echo "error: missing$$missing: sudo apt-get install prometheus prometheus-alertmanager"; \
			exit 1; \
		fi; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
