# The README's two commands: `make demo` and `make test`. Both set up everything they need.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint redis-server promtool faketime chromium bench clean

$(STAMP): pyproject.toml
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "shardmon needs Python 3.11 or newer as python3"; exit 1; }
	@python3 -c 'import ensurepip' 2>/dev/null || { \
	  echo "python3 cannot make virtual environments: installing Debian's python3-venv"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3-venv >/dev/null; }
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

# The tests start their own redis-server; install Debian's where the binary is missing. The
# Cluster and Sentinel tests need Redis 7 (cluster-port, ADDSLOTSRANGE).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "redis-server not found: installing Debian's package"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }
	@major=$$(redis-server --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p'); \
	[ "$${major:-0}" -ge 7 ] || { echo "the tests need redis-server 7 or newer, found: \
	$$(redis-server --version)"; exit 1; }

# The exporter's test checks /metrics with promtool, from Debian's prometheus package.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "promtool not found: installing Debian's prometheus package"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install \
	    -y -qq --no-install-recommends prometheus >/dev/null; }

# The clock tests run node processes under libfaketime, from Debian's faketime package.
faketime:
	@command -v faketime >/dev/null 2>&1 || { \
	  echo "faketime not found: installing Debian's package"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq faketime >/dev/null; }

# The dashboard's tests and benchmark drive Debian's chromium through Playwright (which downloads
# no browser of its own); the emoji font shows the alert titles as a bot operator's browser does.
chromium:
	@command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi 'color emoji' || { \
	  echo "chromium or its emoji font not found: installing Debian's packages"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install \
	    -y -qq --no-install-recommends chromium fonts-noto-color-emoji fonts-dejavu-core >/dev/null; }

demo: $(STAMP)
	$(VENV)/bin/shardmon demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	MYPYPATH=benchmarks $(VENV)/bin/mypy benchmarks

test: $(STAMP) redis-server promtool faketime chromium lint
	$(VENV)/bin/pytest

# Every benchmark script, each against a private redis-server it starts itself.
bench: $(STAMP) redis-server chromium
	@for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
