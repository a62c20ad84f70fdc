//! `wasm-trim MODULE`: removes from a built filter module the exports of the proxy-wasm
//! callbacks it does not implement ([`oauth2_filter::UNUSED_CALLBACKS`]), in place. Envoy
//! then never calls into the VM for them. Every other byte of the module is kept as it is.
//! It also refuses (exit 1) a module importing anything Envoy does not provide (see
//! [`wasm_trim::foreign_imports`]): such a module builds, then fails to load in Envoy.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: wasm-trim MODULE.wasm");
        return ExitCode::from(2);
    };
    let module = match std::fs::read(&path) {
        Ok(module) => module,
        Err(e) => {
            eprintln!("wasm-trim: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    match wasm_trim::foreign_imports(&module) {
        Ok(foreign) if foreign.is_empty() => {}
        Ok(foreign) => {
            eprintln!(
                "wasm-trim: {} imports what Envoy does not provide (it would not load): {}",
                path.display(),
                foreign.join(", ")
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("wasm-trim: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let trimmed = wasm_trim::without_exports(&module, &oauth2_filter::UNUSED_CALLBACKS);
    match trimmed.and_then(|t| {
        // Write beside and rename, so an Envoy loading the module never reads half of it.
        let partial = path.with_extension("wasm.trimming");
        std::fs::write(&partial, &t.module)?;
        std::fs::rename(&partial, &path)?;
        Ok(t.removed)
    }) {
        Ok(removed) => {
            println!(
                "wasm-trim: {} exports removed from {}",
                removed.len(),
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wasm-trim: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
