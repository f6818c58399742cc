//! Reads a table of a lake with the outside readers of `tests/delta/read.py`
//! (the Python `deltalake` package, DuckDB over its dataset, Polars) and
//! returns what each counted. Shared by the lake, hepop and e2e tests
//! (`#[path]` modules); the readers' venv is installed on first use.
use std::path::Path;
use std::process::{Command, Stdio};

pub fn read_delta(
    location: &str,
    table: &str,
    storage_options: Option<&serde_json::Value>,
) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("tests/delta"))
        .find(|d| d.join("read.py").exists())
        .expect("tests/delta/read.py in the workspace");
    let tools = Command::new(root.join("tools.sh"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(tools.status.success(), "tests/delta/tools.sh failed");
    let python = String::from_utf8(tools.stdout).unwrap();
    let mut c = Command::new(python.trim());
    c.arg(root.join("read.py")).args([location, table]);
    if let Some(o) = storage_options {
        c.arg(o.to_string());
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "read.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
