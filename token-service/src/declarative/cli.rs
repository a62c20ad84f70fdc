//! `token-service config validate|diff|sync FILE` and `token-service config dump`, and the
//! start-up sync of `--declarative-config`.

use super::{dump, parse, DeclarativeError, Desired, Diff, Format};
use crate::config::ConfigCommand;
use crate::store::{Database, Store, StoreOptions};
use std::path::Path;

/// Reads and checks a file; `.json` files are read as JSON, others as YAML.
pub fn read(path: &Path) -> Result<Desired, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() > super::MAX_FILE_BYTES {
        return Err(format!(
            "{}: {}",
            path.display(),
            DeclarativeError::TooLarge
        ));
    }
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let format = if is_json { Format::Json } else { Format::Yaml };
    let env = |name: &str| std::env::var(name).ok();
    parse(&bytes, format, &env).map_err(|e| explain(path, e))
}

/// Every problem on a line of its own, each naming its place in the file.
fn explain(path: &Path, error: DeclarativeError) -> String {
    match error {
        DeclarativeError::Invalid(problems) => {
            let mut text = format!("{} is invalid:", path.display());
            for p in problems {
                text.push_str(&format!("\n  {p}"));
            }
            text
        }
        other => format!("{}: {other}", path.display()),
    }
}

/// Runs a `config` command; what it shows goes to `out`.
pub async fn run(
    command: &ConfigCommand,
    database: &Database,
    out: &mut dyn std::io::Write,
) -> Result<(), String> {
    let write = |out: &mut dyn std::io::Write, text: &str| {
        writeln!(out, "{text}").map_err(|e| format!("cannot write the output: {e}"))
    };
    match command {
        ConfigCommand::Validate { file } => {
            let desired = read(file)?;
            let summary = format!(
                "{} is valid: {} services, {} plugins, {} consumers, {} credentials",
                file.display(),
                desired.services.len(),
                desired.plugins.len(),
                desired.consumers.len(),
                desired.credentials.len()
            );
            write(out, &summary)
        }
        ConfigCommand::Diff { file } => {
            let desired = read(file)?;
            let store = open(database).await?;
            let diff = super::diff(&store, desired)
                .await
                .map_err(|e| explain(file, e))?;
            write(out, &report(&diff, "would change"))
        }
        ConfigCommand::Sync { file } => {
            let desired = read(file)?;
            let store = open(database).await?;
            let diff = super::sync(&store, desired)
                .await
                .map_err(|e| explain(file, e))?;
            write(out, &report(&diff, "changed"))
        }
        ConfigCommand::Dump { format } => {
            let store = open(database).await?;
            let document = dump(&store)
                .await
                .map_err(|e| format!("cannot read the database: {e}"))?;
            let text = match format.as_str() {
                "json" => serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?,
                _ => serde_saphyr::to_string(&document).map_err(|e| e.to_string())?,
            };
            write(out, text.trim_end())
        }
    }
}

/// Syncs `path` into `store` (start-up); answers what changed.
pub async fn sync_file(store: &Store, path: &Path) -> Result<Diff, String> {
    let desired = read(path)?;
    super::sync(store, desired)
        .await
        .map_err(|e| explain(path, e))
}

async fn open(database: &Database) -> Result<Store, String> {
    Store::connect(database, StoreOptions::default())
        .await
        .map_err(|e| format!("cannot open database {database}: {e}"))
}

/// decK's lines, then a summary: `Summary: created 1, updated 0, deleted 2`.
pub fn report(diff: &Diff, verb: &str) -> String {
    use super::Action::*;
    let mut lines = diff.lines();
    lines.push(format!(
        "Summary ({verb}): created {}, updated {}, deleted {}",
        diff.count(Create),
        diff.count(Update),
        diff.count(Delete)
    ));
    lines.join("\n")
}
