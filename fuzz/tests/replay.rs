//! Every seed of `corpus/<target>/` and every crash input of `regressions/<target>/` through
//! its target, on stable and without libFuzzer: a crash the fuzzer found stays a test.
//!
//! Each input runs on its own thread named `<target> <file>`, so a panic names the input and a
//! stack overflow (which aborts the whole process) prints that name in Rust's message.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of `dir/<target>/` for every target directory under `dir`.
fn inputs(dir: &str) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let Ok(targets) = fs::read_dir(root().join(dir)) else {
        return found;
    };
    for target in targets.flatten() {
        let name = target.file_name().to_string_lossy().into_owned();
        let files = fs::read_dir(target.path()).into_iter().flatten().flatten();
        for file in files.filter(|f| f.path().is_file()) {
            found.push((name.clone(), file.path()));
        }
    }
    found.sort();
    found
}

/// Runs each input through its target; the failures, described.
fn replay(dir: &str) -> (usize, Vec<String>) {
    let inputs = inputs(dir);
    let mut failures = Vec::new();
    for (target, path) in &inputs {
        let Some(run) = fuzz::target(target) else {
            failures.push(format!("{dir}/{target}: no target of that name"));
            continue;
        };
        let data = fs::read(path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let outcome = std::thread::Builder::new()
            .name(format!("{target} {dir}/{target}/{file}"))
            .spawn(move || run(&data))
            .unwrap()
            .join();
        if outcome.is_err() {
            failures.push(format!("{dir}/{target}/{file} panics"));
        }
    }
    (inputs.len(), failures)
}

#[test]
fn every_corpus_seed_runs_clean() {
    let (count, failures) = replay("corpus");
    assert!(count > 0, "the corpus is empty");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_regression_input_runs_clean() {
    let (_, failures) = replay("regressions");
    assert!(failures.is_empty(), "{failures:#?}");
}

fn names_in(path: &Path) -> BTreeSet<String> {
    fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").map(str::to_owned).unwrap_or(name)
        })
        .collect()
}

/// A target is its function in `TARGETS`, its `fuzz_targets/` wrapper, its `[[bin]]` and
/// its seeds: whichever is missing is named here (and `make fuzz-short` would miss it).
#[test]
fn every_target_has_a_wrapper_a_bin_and_seeds() {
    let listed: BTreeSet<String> = fuzz::TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    let manifest = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let mut missing = Vec::new();
    for name in &listed {
        let wrapper = root().join("fuzz_targets").join(format!("{name}.rs"));
        match fs::read_to_string(&wrapper) {
            // `fuzz::name` or `fuzz::module::name`: the wrapper calls the listed function.
            Ok(code) if code.contains(&format!("{name}(data)")) => {}
            Ok(_) => missing.push(format!("fuzz_targets/{name}.rs does not call {name}(data)")),
            Err(_) => missing.push(format!(
                "fuzz_targets/{name}.rs:\n#![no_main]\n\nlibfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::{name}(data));"
            )),
        }
        if !manifest.contains(&format!("name = \"{name}\"")) {
            missing.push(format!(
                "in fuzz/Cargo.toml:\n[[bin]]\nname = \"{name}\"\npath = \"fuzz_targets/{name}.rs\"\n\
                 required-features = [\"libfuzzer\"]\ntest = false\ndoc = false\nbench = false"
            ));
        }
        if names_in(&root().join("corpus").join(name)).is_empty() {
            missing.push(format!("seeds in corpus/{name}/"));
        }
    }
    for dir in ["fuzz_targets", "corpus", "regressions"] {
        for name in names_in(&root().join(dir)) {
            if !listed.contains(&name) {
                missing.push(format!("{dir}/{name} has no entry in fuzz::TARGETS"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "a target is incomplete; missing:\n\n{}",
        missing.join("\n\n")
    );
}
