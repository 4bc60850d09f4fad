//! Shared test helpers: where the real test data, ONNX Runtime and the
//! Python checkers are, and how to read our Parquet back.
//!
//! Tests that need something `make test` installs skip with a message when
//! run bare (`cargo test`), and fail when `NIGHTSCREEN_STRICT=1` (as
//! `make test` sets), so CI can never pass by skipping.

use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::{Array, RecordBatch};
use nightscreen::message::SourceId;

pub fn strict() -> bool {
    std::env::var("NIGHTSCREEN_STRICT").is_ok_and(|v| v == "1")
}

fn missing(what: &str) -> Option<PathBuf> {
    if strict() {
        panic!("{what} is missing (NIGHTSCREEN_STRICT=1): run `make test`");
    }
    eprintln!("skipping: {what} is missing; `make test` installs it");
    None
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A validator on the PATH (`make pacs` installs dcmtk and dicom3tools):
/// missing fails under NIGHTSCREEN_STRICT=1, else the test is skipped.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()));
    if found.is_none() {
        assert!(!strict(), "{name} is missing (NIGHTSCREEN_STRICT=1): run `make pacs`");
        eprintln!("skipping: {name} is missing; `make pacs` installs it");
    }
    found
}

/// `.deps/testdata` (pydicom and pydicom-data test files).
pub fn testdata() -> Option<PathBuf> {
    let dir =
        std::env::var_os("NIGHTSCREEN_TESTDATA").map(PathBuf::from).unwrap_or_else(|| root().join(".deps/testdata"));
    if dir.join("pydicom").is_dir() && dir.join("pydicom-data").is_dir() {
        Some(dir)
    } else {
        missing(&format!("test data at {}", dir.display()))
    }
}

/// `.deps/photos` (`make photos`: real fundus and other colour photographs
/// from packages on PyPI, with `photos.tsv` listing them and their licences).
pub fn photos() -> Option<PathBuf> {
    let dir = std::env::var_os("NIGHTSCREEN_PHOTOS").map(PathBuf::from).unwrap_or_else(|| root().join(".deps/photos"));
    if dir.join("photos.tsv").is_file() && dir.join("fundus").is_dir() && dir.join("other").is_dir() {
        Some(dir)
    } else {
        missing(&format!("the real photographs at {} (`make photos`)", dir.display()))
    }
}

/// The ONNX Runtime library the binary will load.
pub fn onnxruntime() -> Option<PathBuf> {
    match nightscreen::runtime::locate_library() {
        Ok(path) => Some(path),
        Err(_) => missing("the ONNX Runtime library"),
    }
}

/// Python with DuckDB, pyarrow and polars.
pub fn python() -> Option<PathBuf> {
    let py = std::env::var_os("NIGHTSCREEN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".deps/venv/bin/python"));
    if py.exists() {
        Some(py)
    } else {
        missing(&format!("python at {}", py.display()))
    }
}

/// Headless Chromium (`chromium` on the PATH, Debian's package; `make
/// test` installs it), or `NIGHTSCREEN_CHROMIUM`.
pub fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NIGHTSCREEN_CHROMIUM").map(PathBuf::from) {
        return if path.exists() { Some(path) } else { missing(&format!("chromium at {}", path.display())) };
    }
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("chromium")).find(|p| p.is_file()));
    match found {
        Some(path) => Some(path),
        None => missing("chromium (headless browser for the HTML worklist test)"),
    }
}

/// The pseudonymisation key the tests run with (a test key, not a secret).
pub const TEST_KEY: &str = "5e1f0c6a9b2d4e8f7a3c1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f";

pub fn test_key() -> nightscreen::privacy::PseudonymKey {
    nightscreen::privacy::PseudonymKey::from_hex(TEST_KEY, "TEST_KEY").expect("test key")
}

/// The `nightscreen` binary under test, with the test key in its environment.
pub fn nightscreen() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nightscreen"));
    cmd.current_dir(root());
    cmd.env(nightscreen::privacy::KEY_ENV, TEST_KEY).env_remove(nightscreen::privacy::KEY_FILE_ENV);
    cmd
}

/// `nightscreen run --quiet --config CONFIG --input INPUT --out OUT EXTRA…`.
pub fn run_with_config(config: &Path, input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    nightscreen()
        .args(["run", "--quiet", "--config"])
        .arg(config)
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run nightscreen")
}

/// Every entry under `dir` (symbolic links and special files included, none
/// followed), as the paths nightscreen reports them.
pub fn every_entry(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect()
}

/// A table's `file_pseudonym` column turned back into paths: each
/// pseudonym is looked up among the test key's pseudonyms of `candidates`.
/// One that matches none comes back as "<unknown ...>", never silently.
pub fn file_paths(batches: &[RecordBatch], candidates: impl IntoIterator<Item = PathBuf>) -> Vec<Option<String>> {
    let key = test_key();
    let by_pseudonym: std::collections::HashMap<String, String> = candidates
        .into_iter()
        .map(|p| (key.file_pseudonym(&SourceId::File(p.clone())), p.to_string_lossy().into_owned()))
        .collect();
    strings(batches, "file_pseudonym")
        .into_iter()
        .map(|p| p.map(|p| by_pseudonym.get(&p).cloned().unwrap_or_else(|| format!("<unknown file pseudonym {p}>"))))
        .collect()
}

/// Every batch of every part file of one table.
pub fn read_table(out: &Path, table: &str) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    let dir = out.join(table);
    let mut parts: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    parts.sort();
    assert!(!parts.is_empty(), "no part files in {}", dir.display());
    for part in parts {
        let file = std::fs::File::open(&part).expect("open part");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet metadata")
            .build()
            .expect("parquet reader");
        for batch in reader {
            batches.push(batch.expect("batch"));
        }
    }
    batches
}

/// One string column of a table, all rows.
pub fn strings(batches: &[RecordBatch], column: &str) -> Vec<Option<String>> {
    use arrow_array::cast::AsArray;
    batches
        .iter()
        .flat_map(|b| {
            let col = b.column_by_name(column).unwrap_or_else(|| panic!("no column {column}"));
            col.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect::<Vec<_>>()
        })
        .collect()
}

/// One i32 column of a table, all rows.
pub fn ints(batches: &[RecordBatch], column: &str) -> Vec<Option<i32>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int32Type;
    batches
        .iter()
        .flat_map(|b| {
            let col = b.column_by_name(column).unwrap_or_else(|| panic!("no column {column}"));
            col.as_primitive::<Int32Type>().iter().collect::<Vec<_>>()
        })
        .collect()
}

/// One f64 column of a table, all rows.
pub fn floats(batches: &[RecordBatch], column: &str) -> Vec<f64> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;
    batches
        .iter()
        .flat_map(|b| {
            let col = b.column_by_name(column).unwrap_or_else(|| panic!("no column {column}"));
            col.as_primitive::<Float64Type>().values().to_vec()
        })
        .collect()
}

/// One nullable f32 column of a table, all rows.
pub fn f32s(batches: &[RecordBatch], column: &str) -> Vec<Option<f32>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float32Type;
    batches
        .iter()
        .flat_map(|b| {
            let col = b.column_by_name(column).unwrap_or_else(|| panic!("no column {column}"));
            col.as_primitive::<Float32Type>().iter().collect::<Vec<_>>()
        })
        .collect()
}

/// The `outputs` list column as vectors.
pub fn outputs(batches: &[RecordBatch]) -> Vec<Vec<f32>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float32Type;
    batches
        .iter()
        .flat_map(|b| {
            let list = b.column_by_name("outputs").expect("outputs").as_list::<i32>().clone();
            (0..list.len()).map(|i| list.value(i).as_primitive::<Float32Type>().values().to_vec()).collect::<Vec<_>>()
        })
        .collect()
}

/// `nightscreen synth --studies N --seed S --out DIR`, through the binary.
pub fn synth_studies(out: &Path, studies: u32, seed: u64) {
    let run = nightscreen()
        .args(["synth", "--studies", &studies.to_string(), "--seed", &seed.to_string(), "--out"])
        .arg(out)
        .output()
        .expect("synth");
    assert!(run.status.success(), "synth: {}", String::from_utf8_lossy(&run.stderr));
}
