//! The built-in catalogue (models.toml at the repository's root) as JSON for every function to
//! read at cold start: the same document parses in a fifth of the instructions as JSON that it
//! takes as TOML (docs/benchmarks.md). Operators' catalogue files (`MODEL_CATALOGUE`) stay TOML.

use std::path::Path;

fn main() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models.toml");
    println!("cargo::rerun-if-changed={}", source.display());
    let text = std::fs::read_to_string(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    let document: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("models.toml: {e}"));
    let json = serde_json::to_string(&document).unwrap_or_else(|e| panic!("models.toml as JSON: {e}"));
    let out =
        Path::new(&std::env::var_os("OUT_DIR").unwrap_or_else(|| panic!("cargo sets OUT_DIR"))).join("models.json");
    std::fs::write(&out, json).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
