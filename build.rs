//! Build script: converts the REST API's contract, `openapi.yaml` at the crate root, to JSON
//! once, at build time, into `$OUT_DIR/openapi.json`, which `rest::ops` embeds and serves at
//! `GET /api/v1/openapi.json`. A contract that is not valid YAML fails the build.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=openapi.yaml");
    println!("cargo:rerun-if-changed=build.rs");
    let yaml = std::fs::read_to_string("openapi.yaml")
        .unwrap_or_else(|e| panic!("cannot read openapi.yaml: {e}"));
    let doc: serde_json::Value =
        serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("openapi.yaml: {e}"));
    let json = serde_json::to_string(&doc).unwrap_or_else(|e| panic!("openapi.yaml: {e}"));
    let out = std::env::var_os("OUT_DIR").unwrap_or_else(|| panic!("cargo sets OUT_DIR"));
    std::fs::write(Path::new(&out).join("openapi.json"), json)
        .unwrap_or_else(|e| panic!("cannot write openapi.json: {e}"));
}
