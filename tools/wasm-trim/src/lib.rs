//! Rewrites a wasm module's export section without some names; every other section is copied
//! byte for byte.

use wasm_encoder::{ExportKind, ExportSection, Module, RawSection};
use wasmparser::{ExternalKind, Parser, Payload};

#[derive(Debug, thiserror::Error)]
pub enum TrimError {
    #[error("cannot read or write the module: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a valid wasm module: {0}")]
    Parse(#[from] wasmparser::BinaryReaderError),
    #[error("the module is a component, not a core module")]
    Component,
    #[error("the module ends inside a section")]
    Truncated,
}

/// Imports Envoy provides: its proxy-wasm ABI (`env.proxy_*`) and WASI preview 1. Anything
/// else (a `wasm_js` `getrandom`'s `__wbindgen_placeholder__`, an `env` symbol a C dependency
/// left undefined) makes Envoy refuse the module at load time, after a build that "worked".
fn envoy_provides(module: &str, name: &str) -> bool {
    (module == "env" && name.starts_with("proxy_")) || module == "wasi_snapshot_preview1"
}

/// The imports of `module` that Envoy does not provide (`module.name`), in order.
pub fn foreign_imports(module: &[u8]) -> Result<Vec<String>, TrimError> {
    let mut foreign = Vec::new();
    for payload in Parser::new(0).parse_all(module) {
        if let Payload::ImportSection(reader) = payload? {
            for import in reader {
                let import = import?;
                if !envoy_provides(import.module, import.name) {
                    foreign.push(format!("{}.{}", import.module, import.name));
                }
            }
        }
    }
    Ok(foreign)
}

pub struct Trimmed {
    pub module: Vec<u8>,
    /// The names that were exported and are not any more.
    pub removed: Vec<String>,
}

pub fn without_exports(module: &[u8], names: &[&str]) -> Result<Trimmed, TrimError> {
    let mut out = Module::new();
    let mut removed = Vec::new();
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload?;
        match &payload {
            Payload::Version { encoding, .. } if *encoding != wasmparser::Encoding::Module => {
                return Err(TrimError::Component)
            }
            Payload::ExportSection(reader) => {
                let mut exports = ExportSection::new();
                for export in reader.clone() {
                    let export = export?;
                    if names.contains(&export.name) {
                        removed.push(export.name.to_string());
                    } else {
                        exports.export(export.name, kind(export.kind), export.index);
                    }
                }
                out.section(&exports);
            }
            // Functions inside the code section come as entries of the section already copied.
            Payload::CodeSectionEntry(_) => {}
            _ => {
                if let Some((id, range)) = payload.as_section() {
                    let data = module.get(range).ok_or(TrimError::Truncated)?;
                    out.section(&RawSection { id, data });
                }
            }
        }
    }
    Ok(Trimmed {
        module: out.finish(),
        removed,
    })
}

fn kind(kind: ExternalKind) -> ExportKind {
    match kind {
        ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
        ExternalKind::Table => ExportKind::Table,
        ExternalKind::Memory => ExportKind::Memory,
        ExternalKind::Global => ExportKind::Global,
        ExternalKind::Tag => ExportKind::Tag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{CodeSection, Function, FunctionSection, Instruction, TypeSection};

    /// A module with one empty function exported under each name, plus a memory.
    fn module_exporting(names: &[&str]) -> Vec<u8> {
        let mut types = TypeSection::new();
        types.ty().function([], []);
        let mut functions = FunctionSection::new();
        let mut code = CodeSection::new();
        let mut exports = ExportSection::new();
        for (i, name) in names.iter().enumerate() {
            functions.function(0);
            let mut body = Function::new([]);
            body.instruction(&Instruction::End);
            code.function(&body);
            exports.export(name, ExportKind::Func, i as u32);
        }
        let mut memories = wasm_encoder::MemorySection::new();
        memories.memory(wasm_encoder::MemoryType {
            minimum: 1,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        exports.export("memory", ExportKind::Memory, 0);
        let mut module = Module::new();
        module
            .section(&types)
            .section(&functions)
            .section(&memories)
            .section(&exports)
            .section(&code);
        module.finish()
    }

    fn exported(module: &[u8]) -> Vec<(String, u32)> {
        let mut names = Vec::new();
        for payload in Parser::new(0).parse_all(module) {
            if let Ok(Payload::ExportSection(reader)) = payload {
                for export in reader {
                    let export = export.unwrap();
                    names.push((export.name.to_string(), export.index));
                }
            }
        }
        names
    }

    #[test]
    fn removes_only_the_named_exports_and_keeps_the_module_valid() {
        let module =
            module_exporting(&["proxy_on_log", "proxy_on_request_headers", "proxy_on_done"]);
        let trimmed =
            without_exports(&module, &["proxy_on_log", "proxy_on_done", "absent"]).unwrap();
        assert_eq!(trimmed.removed, ["proxy_on_log", "proxy_on_done"]);
        assert_eq!(
            exported(&trimmed.module),
            [
                ("proxy_on_request_headers".to_string(), 1),
                ("memory".to_string(), 0)
            ]
        );
        wasmparser::Validator::new()
            .validate_all(&trimmed.module)
            .unwrap();
    }

    #[test]
    fn trimming_twice_changes_nothing_more() {
        let module = module_exporting(&["proxy_on_log", "proxy_on_vm_start"]);
        let once = without_exports(&module, &["proxy_on_log"]).unwrap().module;
        let twice = without_exports(&once, &["proxy_on_log"]).unwrap();
        assert!(twice.removed.is_empty());
        assert_eq!(twice.module, once);
    }

    fn module_importing(imports: &[(&str, &str)]) -> Vec<u8> {
        let mut types = TypeSection::new();
        types.ty().function([], []);
        let mut section = wasm_encoder::ImportSection::new();
        for (module, name) in imports {
            section.import(module, name, wasm_encoder::EntityType::Function(0));
        }
        let mut module = Module::new();
        module.section(&types).section(&section);
        module.finish()
    }

    #[test]
    fn imports_envoy_does_not_provide_are_named() {
        let module = module_importing(&[
            ("env", "proxy_log"),
            ("wasi_snapshot_preview1", "random_get"),
            ("__wbindgen_placeholder__", "__wbindgen_describe"),
            ("env", "memcpy"),
        ]);
        assert_eq!(
            foreign_imports(&module).unwrap(),
            ["__wbindgen_placeholder__.__wbindgen_describe", "env.memcpy"]
        );
        let clean =
            module_importing(&[("env", "proxy_log"), ("wasi_snapshot_preview1", "fd_write")]);
        assert!(foreign_imports(&clean).unwrap().is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            without_exports(b"not wasm", &[]),
            Err(TrimError::Parse(_))
        ));
        let module = module_exporting(&["proxy_on_log"]);
        assert!(without_exports(&module[..module.len() - 3], &[]).is_err());
    }
}
