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

/// `OAUTH2_FILTER_BUILD=native`: the suite runs against the dynamic-module build of the filter
/// (`filter-native/`) instead of the wasm one; anything else (or unset) means wasm.
pub fn native_build() -> bool {
    std::env::var("OAUTH2_FILTER_BUILD").is_ok_and(|b| b == "native")
}

/// The directory Envoy loads `liboauth2_filter_native.so` from (`make build-native` puts it in
/// target/release; `OAUTH2_FILTER_NATIVE_DIR` selects another build).
pub fn native_module_dir() -> PathBuf {
    let dir = std::env::var_os("OAUTH2_FILTER_NATIVE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release"));
    required(
        dir.join("liboauth2_filter_native.so"),
        "the native filter (make build-native)",
    );
    dir
}

/// The `http_filters` entry of the native build (swapped in for the wasm one).
pub fn native_filter_template() -> PathBuf {
    workspace_root().join("envoy/native-filter.yaml.tmpl")
}

/// Where Envoy shows the filter's counters: `wasmcustom.oauth2.*` for the wasm build,
/// `dynamicmodulescustom.oauth2.*` for the native one (each runtime's own namespace).
pub fn stat_name(metric: &str) -> String {
    let namespace = if native_build() {
        "dynamicmodulescustom"
    } else {
        "wasmcustom"
    };
    format!("{namespace}.{metric}")
}

/// A counter's name in `/stats/prometheus`: Envoy strips the wasm namespace (registered as a
/// custom one) but not the dynamic modules' (`envoy_dynamicmodulescustom_oauth2_allowed`).
pub fn prometheus_name(metric: &str) -> String {
    let name = metric.replace('.', "_");
    if native_build() {
        format!("envoy_dynamicmodulescustom_{name}")
    } else {
        name
    }
}

/// `scripts/pg.sh`: starts, stops and adds databases to a throwaway PostgreSQL server.
pub fn pg_script() -> PathBuf {
    workspace_root().join("scripts/pg.sh")
}

/// A PostgreSQL client program (`psql`, `pg_dump`) of the newest installed server version,
/// as `scripts/pg.sh` picks the server; from `PATH` when none is under /usr/lib/postgresql.
pub fn pg_tool(name: &str) -> PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin").join(name)))
        })
        .filter(|(_, path)| path.exists())
        .max_by_key(|(version, _)| *version);
    newest.map_or_else(|| PathBuf::from(name), |(_, path)| path)
}
