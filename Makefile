# nightscreen — the two commands that matter: `make demo` and `make test`.
# Everything they need is installed here, into .deps/ (git-ignored):
#   .deps/onnxruntime/  libonnxruntime.so from the onnxruntime PyPI wheel
#   .deps/pytools/      cmake from PyPI, only if the machine has none (JPEG-LS codec build)
#   .deps/testdata/     pydicom's and pydicom-data's DICOM test files
#   .deps/venv/         Python with DuckDB, pyarrow, polars, pydicom (checks, references)

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

.PHONY: all build demo test bench ort testdata venv cmake doctor clean

all: build

cmake:
	@command -v cmake >/dev/null 2>&1 || { \
	  echo "installing cmake from PyPI into $(DEPS)/pytools"; \
	  python3 -m pip install -q --disable-pip-version-check --only-binary=:all: \
	    --target $(DEPS)/pytools cmake==4.4.4; }

ort:
	bash tools/fetch_ort.sh $(ORT_DIR)

testdata:
	bash tools/fetch_testdata.sh $(TESTDATA)

venv:
	bash tools/make_venv.sh $(VENV)

build: cmake
	cargo build --release --locked

doctor: build ort
	$(BIN) doctor --models models

# The main job on the shipped defaults. Until the diabetic-retinopathy model
# exists this screens pydicom's real test files with the fixture models.
# Exit code 1 (some inputs unreadable — pydicom ships deliberately broken
# files) is the expected outcome; 2 (fatal) fails the target.
demo: build ort testdata
	@rc=0; $(BIN) run --config configs/default.toml \
	  --input $(TESTDATA)/pydicom --input $(TESTDATA)/pydicom-data \
	  --out $(DEMO_OUT) --overwrite || rc=$$?; \
	if [ $$rc -gt 1 ]; then exit $$rc; fi; \
	echo; echo "worklist: $(DEMO_OUT)/worklist.csv   tables: $(DEMO_OUT)/{images,studies,errors,skipped}/   audit: $(DEMO_OUT)/run.json"; \
	python3 -c "import json;r=json.load(open('$(DEMO_OUT)/run.json'));c=r['counts'];print('bands:',', '.join(f'{k} {v}' for k,v in c['bands'].items()));print('files',r['inputs']['files_seen'],'frames scored',c['frames_scored'],'skipped',c['skipped'],'errors',c['errors'])"

test: cmake ort testdata venv
	NIGHTSCREEN_TESTDATA=$(CURDIR)/$(TESTDATA) NIGHTSCREEN_PYTHON=$(CURDIR)/$(VENV)/bin/python \
	NIGHTSCREEN_STRICT=1 ORT_DYLIB_PATH=$(CURDIR)/$(ORT_DIR)/libonnxruntime.so \
	  cargo test --release --locked

clean:
	rm -rf target out
