# The two commands of the README: `make demo` starts the service, `make test` runs every test.
#
# Both run in the project's own virtualenv, .venv (so Debian's system Python, which refuses pip
# installs (PEP 668), is never touched): made with `$(PYTHON) -m venv` (Debian: python3-venv), and
# mdsvc installed into it again only when setup.py or pyproject.toml change (the stamp files
# .venv/.installed and .venv/.installed-test). `rm -rf .venv` starts over.
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
TEST_TOOLS := $(VENV)/.installed-test
PIP := $(VPY) -m pip install -q --disable-pip-version-check

.PHONY: demo test check install install-test bench sample-configs docs

# The virtualenv itself. A failed `venv` (no python3-venv) leaves a half-made directory behind:
# it is removed, so that the next run tries again.
$(VPY):
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "make: '$(PYTHON) -m venv $(VENV)' failed; on Debian or Ubuntu: apt-get install python3-venv" >&2; exit 1; }

# mdsvc, editable (the source tree is what runs), then twistd's plugin cache regenerated, so that
# the first twistd run neither scans nor writes it (the cache files are ignored by git).
$(INSTALLED): setup.py pyproject.toml | $(VPY)
	$(PIP) -e . --config-settings editable_mode=compat
	$(VPY) -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	@touch $@

# The test tools (setup.py's "test" extra) in the same virtualenv.
$(TEST_TOOLS): $(INSTALLED)
	$(PIP) -e '.[test]' --config-settings editable_mode=compat
	@touch $@

install: $(INSTALLED)

# Everything else the suite needs, each in its own place (README, "What `make test` installs").
install-test: $(TEST_TOOLS)
	PYTHON=$(abspath $(VPY)) bash .ci/install-test-deps

demo: $(INSTALLED)
	@echo "mdsvc all-in-one on the embedded store with a demo instance (fixed IP 127.0.0.1)."
	@echo "Through the whole chain (proxy listener 127.0.0.1:8080 -> agent -> API 127.0.0.1:8775):"
	@echo "  curl http://127.0.0.1:8080/openstack/latest/meta_data.json"
	@echo "  curl http://127.0.0.1:8080/latest/meta-data/"
	@echo "State (store, agent socket): .demo-state/; stop with Ctrl-C, reset with rm -rf .demo-state"
	$(VENV)/bin/twistd -n --pidfile= mdsvc --role all-in-one --config-file etc/demo.conf

test: install-test check
	$(VPY) -m pytest -q tests

# Lint and types (CONTRIBUTING.md); part of `make test`, so CI runs them.
check: $(TEST_TOOLS)
	$(VPY) -m ruff check .
	$(VPY) -m mypy

# The field tables of docs/instance-documents.md, from the declarations in mdsvc/model.py.
docs: $(INSTALLED)
	$(VPY) -m mdsvc.docpage > docs/instance-documents.md

# The benchmark table of bench/README.md (installs wrk, haproxy and the Nova peer first).
bench: $(INSTALLED)
	PYTHON=$(abspath $(VPY)) bash bench/install.sh && $(VPY) bench/run.py

# etc/ROLE.conf of every role, rendered from the option table in mdsvc/config.py (a test fails
# when one is stale).
sample-configs: $(INSTALLED)
	$(VPY) -m mdsvc.manage sample-config --output-dir etc
