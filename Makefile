# Entry points for people and CI. Every target works on a fresh Debian/Ubuntu machine.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# Tested versions of every dependency; the Dockerfile installs with the same file.
CONSTRAINTS := constraints.txt
# The test toolchain (pytest, mypy, ruff, ...) on top of the runtime install.
TOOLS := $(VENV)/.test-tools

.PHONY: demo prometheus chromium control-plane report-picture test test-fast lint typecheck crds recording constraints clean

# The runtime only: what the operator, the demo and the other commands need.
$(BIN)/evergreen: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e .
	touch $@

$(TOOLS): $(BIN)/evergreen
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[test]'
	touch $@

## demo: evaluate the example ModelMonitor over the bundled recorded scenario (no cluster)
demo: $(BIN)/evergreen
	$(BIN)/evergreen demo

## prometheus: the Debian Prometheus server and promtool the integration tests start
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
	  ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus)

## chromium: the Debian headless browser (and a font) the HTML report tests open reports in
chromium:
	@command -v chromium >/dev/null && test -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf || \
	  ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core)

## report-picture: redraw the README's picture of the demo's backtest report
report-picture: $(BIN)/evergreen chromium
	mkdir -p .cache
	$(BIN)/evergreen backtest --recording operator/evergreen/data/showcase.recording.json.gz \
	  --report .cache/backtest-report.html >/dev/null
	chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,2800 \
	  --screenshot=$(CURDIR)/docs/images/backtest-report.png file://$(CURDIR)/.cache/backtest-report.html

## control-plane: Debian's etcd for the end-to-end tests' Kubernetes control plane (kube-apiserver and
## kube-controller-manager come from $KUBEBUILDER_ASSETS or ../shared/envtest)
control-plane:
	@command -v etcd >/dev/null || \
	  ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends etcd-server)

## test: lint, types and the whole suite (unit, real Prometheus, operator end to end on a real
## control plane, chart, reports)
test: $(TOOLS) prometheus chromium control-plane lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

## test-fast: unit tests only (no Prometheus, no operator)
test-fast: $(TOOLS)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

lint: $(TOOLS)
	$(BIN)/ruff check operator tests bench

typecheck: $(TOOLS)
	$(BIN)/mypy

## crds: regenerate the CRD manifests and the field reference from the pydantic models
crds: $(BIN)/evergreen
	$(BIN)/evergreen crd -o crds/modelmonitors.yaml -o charts/evergreen/crds/modelmonitors.yaml
	$(BIN)/evergreen reference -o docs/modelmonitor.md

## recording: re-record the demo's bundled scenario (needs prometheus and promtool)
recording: $(BIN)/evergreen prometheus
	$(BIN)/evergreen record -f examples/fraud-detector.yaml --scenario showcase \
	  --span 2026-01-13T05:35:00Z..2026-01-13T06:00:00Z \
	  --span 2026-01-14T05:35:00Z..2026-01-14T06:00:00Z \
	  --span 2026-01-15T12:35:00Z..2026-01-15T13:00:00Z \
	  --span 2026-01-17T06:35:00Z..2026-01-17T07:00:00Z \
	  --span 2026-01-18T06:35:00Z..2026-01-18T07:00:00Z \
	  --description "The showcase scenario: a healthy morning; amount drifting; temperature_c arriving in Fahrenheit; session_length broken for the 0.1% firefox-beta segment; a day later, with the segment still broken, precision and recall drop." \
	  -o operator/evergreen/data/showcase.recording.json.gz

## constraints: re-pin constraints.txt from a fresh install of pyproject.toml's dependencies
constraints:
	rm -rf $(VENV)-pin
	$(PYTHON) -m venv $(VENV)-pin
	$(VENV)-pin/bin/pip install --quiet --upgrade pip
	$(VENV)-pin/bin/pip install --quiet '.[test]'
	{ sed -n '/^#/p' $(CONSTRAINTS); $(VENV)-pin/bin/pip freeze | grep -v '^evergreen'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(VENV)-pin

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
