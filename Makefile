# Two commands do all the set-up from a fresh clone:
#   make book [PROFILE=smoke|laptop|paper]   build the book into _build/html/index.html
#   make test                                unit tests + every chapter at the smoke profile + a -W book build
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PROFILE ?=
# The artifact store: $ATTNPOD_ARTIFACTS when set and not empty (a relative path is taken from this
# folder, as the package does), else ./artifacts. One absolute path for the CLI and the notebooks.
ARTIFACTS := $(abspath $(or $(strip $(ATTNPOD_ARTIFACTS)),$(CURDIR)/artifacts))
export ATTNPOD_ARTIFACTS := $(ARTIFACTS)

.PHONY: book test env notebooks check-book lab clean-artifacts clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[book,test,hf]"
	$(PY) -m ipykernel install --sys-prefix --name attnpod --display-name "attnpod (.venv)" >/dev/null
	touch $@

notebooks: env
	$(PY) book/execute.py $(if $(PROFILE),--profile $(PROFILE))

book: notebooks
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going
	@echo "The book: $(CURDIR)/_build/html/index.html"

# Open every page of the last build in headless Chromium (apt-get install chromium).
check-book: env
	$(PY) book/check_browser.py _build/html

# JupyterLab on the project's kernel; the py:percent chapters open as notebooks (jupytext), edits stay in the .py files.
lab: env
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) --ServerApp.root_dir=$(CURDIR) notebooks

test: env
	$(PY) -m pytest -ra

clean-artifacts:
	@case "$(ARTIFACTS)" in /|"$(HOME)"|"$(CURDIR)") echo "refusing to remove $(ARTIFACTS): set ATTNPOD_ARTIFACTS to the artifact folder" >&2; exit 1;; esac
	rm -rf -- "$(ARTIFACTS)"

clean:
	rm -rf _build notebooks/*.ipynb book/status.md
