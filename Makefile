# Two entry points for a fresh machine: `make run` and `make test`. Each creates .venv and
# installs what it needs; a stamp file makes the second run fast.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
ARGS   ?=

.PHONY: run test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# PySide6 6.12 split QtWebEngine into packages that 6.11 (our cap) does not know: a venv made
# before the cap keeps them and fails `pip check`, so they are removed.
CHECK_ENV := $(PY) -m pip check >/dev/null || { $(PY) -m pip uninstall -y -q PySide6_WebEngine PySide6_Pdf && $(PY) -m pip check; }

$(VENV)/.run-installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	@$(CHECK_ENV)
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	@$(CHECK_ENV)
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	@# Qt's X11 plugin needs system libraries a bare machine may lack: install them when we can.
	@missing="$$($(PY) -c 'from app.ui.launch import missing_x11_packages as m; print(" ".join(m()))')"; \
	if [ -n "$$missing" ] && [ -n "$$DISPLAY" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq $$missing || (apt-get update -qq && apt-get install -y -qq $$missing); \
	  else echo "trackmon's window needs: sudo apt-get install $$missing"; fi; \
	fi
	$(VENV)/bin/trackmon $(ARGS)

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check app tests benchmarks

test: $(VENV)/.test-installed lint
	@# gpsbabel reads our CSV back in the export tests (Debian's package; installed when we can).
	@command -v gpsbabel >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -qq gpsbabel >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq gpsbabel >/dev/null 2>&1; }; } \
	  || echo "gpsbabel is not installed: the export tests leave out its read-back check"; }
	@# mosquitto: the MQTT test of re-delivery of unacknowledged messages (amqtt drops them).
	@command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -qq mosquitto >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null 2>&1; }; } \
	  || echo "mosquitto is not installed and could not be: sudo apt-get install mosquitto"; }
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
