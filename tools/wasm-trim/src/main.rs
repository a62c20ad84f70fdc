//! `wasm-trim MODULE`: removes from a built filter module the exports of the proxy-wasm
//! callbacks it does not implement ([`oauth2_filter::UNUSED_CALLBACKS`]), in place. Envoy
//! then never calls into the VM for them. Every other byte of the module is kept as it is.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: wasm-trim MODULE.wasm");
        return ExitCode::from(2);
    };
    let trimmed = std::fs::read(&path)
        .map_err(wasm_trim::TrimError::from)
        .and_then(|module| wasm_trim::without_exports(&module, &oauth2_filter::UNUSED_CALLBACKS));
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
