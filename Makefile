# One command to set up and serve, one to set up and test (see README.md).
# Needs python3 (3.11+) and npm on PATH; everything else is installed into .venv and
# interop/node/node_modules.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NODE_DEPS := interop/node/node_modules/.package-lock.json

.PHONY: serve test pytest lint type gen setup clean system-tools

# Debian packages the tests run: openssl (the TLS tests issue their certificates with it), nginx
# and its stream module (the load-balancer tests), util-linux's prlimit (a server under a
# file-descriptor limit, the connection-cap test), chromium (loads `greeter trace html` pages
# headless), tshark (reads the pcapng captures).
SYSTEM_PACKAGES := openssl nginx libnginx-mod-stream util-linux chromium tshark
SYSTEM_FILES := /usr/bin/openssl /usr/sbin/nginx /usr/lib/nginx/modules/ngx_stream_module.so \
	/usr/bin/prlimit /usr/bin/chromium /usr/bin/tshark

serve: $(VENV)/.runtime
	$(BIN)/greeter serve $(ARGS)

test: $(VENV)/.dev $(NODE_DEPS) system-tools
	$(BIN)/python tools/gen.py --check
	$(BIN)/ruff check greeter tests tools benchmarks
	$(BIN)/ruff format --check greeter tests tools benchmarks
	$(BIN)/mypy --strict greeter
	$(BIN)/pytest $(ARGS)

pytest: $(VENV)/.dev $(NODE_DEPS) system-tools
	$(BIN)/pytest $(ARGS)

gen: $(VENV)/.dev
	$(BIN)/python tools/gen.py

setup: $(VENV)/.dev $(NODE_DEPS) system-tools

# Installs what is missing when run as root (CI); otherwise names the command to run.
system-tools:
	@missing=""; for file in $(SYSTEM_FILES); do [ -e $$file ] || missing="$$missing $$file"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES); \
		else \
			echo "the tests need$$missing: as root, apt-get install $(SYSTEM_PACKAGES)"; exit 1; \
		fi; \
	fi

$(VENV)/.created:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "greeter needs Python 3.11+ (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	touch $@

$(VENV)/.runtime: $(VENV)/.created pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: $(VENV)/.created pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.runtime

$(NODE_DEPS): interop/node/package-lock.json
	npm ci --prefix interop/node --no-audit --no-fund

clean:
	rm -rf $(VENV) interop/node/node_modules
