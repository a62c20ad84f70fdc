//! Where the harness finds what `make build` and `make setup` produced.

use std::path::PathBuf;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn required(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} not found at {}: run `make build` (or `make test`) first",
        path.display()
    );
    path
}

pub fn token_service_bin() -> PathBuf {
    required(
        target_dir().join("release/token-service"),
        "the token-service binary",
    )
}

pub fn demo_upstream_bin() -> PathBuf {
    required(
        target_dir().join("release/demo-upstream"),
        "the demo-upstream binary",
    )
}

/// The filter `make build` made, or `OAUTH2_FILTER_WASM` (to run the suite against another
/// build of the filter, e.g. an older commit's).
pub fn wasm_module() -> PathBuf {
    let path = std::env::var_os("OAUTH2_FILTER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("wasm32-wasip1/wasm/oauth2_filter.wasm"));
    required(path, "the wasm filter")
}

pub fn envoy_bin() -> PathBuf {
    let path = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/envoy"));
    required(path, "Envoy (`make setup` installs it into .venv)")
}

pub fn envoy_template() -> PathBuf {
    workspace_root().join("envoy/envoy.yaml.tmpl")
}

pub fn make_cert_script() -> PathBuf {
    workspace_root().join("scripts/make-cert.sh")
}
