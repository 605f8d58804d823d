# The two commands: `make demo` and `make test`. Everything else is set-up they share.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Debug builds for tests (fast to compile); release for benchmarks and the demo.
BUILD_PROFILE ?= --release

.PHONY: demo test lint rust-test py-test bench build deps clean

demo: build
	$(PY) -m turbodspy demo $(ARGS)

test: build lint rust-test py-test

build: deps
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop $(BUILD_PROFILE) -q

# Dev extras are installed once per change of pyproject.toml.
deps: $(VENV)/.deps-installed

$(VENV)/.deps-installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q maturin -c constraints.txt
	$(PY) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\\n'.join(p['dependencies'] + p['optional-dependencies']['dev']))" > $(VENV)/requirements.txt
	$(PY) -m pip install -q -r $(VENV)/requirements.txt -c constraints.txt
	touch $@

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings

rust-test:
	cargo test

py-test: build
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: build
	$(PY) -m pytest benches --benchmark-enable --benchmark-columns=median,mean,ops,rounds -p no:randomly $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) target
