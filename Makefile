# The two commands of the README: `make demo` starts the service, `make test` runs every test.
PYTHON ?= python3

.PHONY: demo test check install install-test bench sample-configs docs

install:
	$(PYTHON) -m pip install -q -e . --config-settings editable_mode=compat

install-test: install
	bash .ci/install-test-deps

demo: install
	@echo "mdsvc all-in-one on the embedded store with a demo instance (fixed IP 127.0.0.1)."
	@echo "Through the whole chain (proxy listener -> agent -> API):"
	@echo "  curl http://127.0.0.1:8080/openstack/latest/meta_data.json"
	@echo "  curl http://127.0.0.1:8080/latest/meta-data/"
	twistd -n --pidfile= mdsvc --role all-in-one --config-file etc/demo.conf

test: install-test check
	$(PYTHON) -m pytest -q tests

# Lint and types (CONTRIBUTING.md); part of `make test`, so CI runs them.
check:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy

# The field tables of docs/instance-documents.md, from the declarations in mdsvc/model.py.
docs:
	$(PYTHON) -m mdsvc.docpage > docs/instance-documents.md

# The benchmark table of bench/README.md (installs wrk, haproxy and the Nova peer first).
bench:
	bash bench/install.sh && $(PYTHON) bench/run.py

# etc/ROLE.conf of every role, rendered from the option table in mdsvc/config.py (a test fails
# when one is stale).
sample-configs:
	$(PYTHON) -m mdsvc.manage sample-config --output-dir etc
