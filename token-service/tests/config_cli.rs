//! `token-service config validate|diff|sync|dump` and `--declarative-config`, run as the
//! operator runs them: the binary, a SQLite file, exit codes and output.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_token-service");
const EXAMPLE: &str = include_str!("../../examples/step-on.kong.yml");

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("STEP_ON_PROVISION_KEY", "pk-from-env")
        .env("SHOE_FLY_SHOE_SECRET", "secret-from-env")
        .env_remove("TOKEN_SERVICE_DATABASE")
        .env_remove("TOKEN_SERVICE_DECLARATIVE_CONFIG")
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn validate_diff_sync_dump_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("kong.yml"), EXAMPLE).expect("write");
    let db = ["--database", "t.db"];

    let validate = run(&["config", "validate", "kong.yml"], dir.path());
    assert!(validate.status.success(), "{}", stderr(&validate));
    assert!(
        !dir.path().join("t.db").exists(),
        "validate needs no database"
    );

    let diff = run(
        &[&["config", "diff", "kong.yml"][..], &db].concat(),
        dir.path(),
    );
    assert!(
        stdout(&diff).contains("created 4, updated 0, deleted 0"),
        "{}",
        stdout(&diff)
    );
    let sync = run(
        &[&["config", "sync", "kong.yml"][..], &db].concat(),
        dir.path(),
    );
    assert!(sync.status.success(), "{}", stderr(&sync));
    assert!(
        stdout(&sync).contains("creating consumer 'shoe-fly-shoe'"),
        "{}",
        stdout(&sync)
    );

    let dump = run(&[&["config", "dump"][..], &db].concat(), dir.path());
    assert!(dump.status.success(), "{}", stderr(&dump));
    let dumped = stdout(&dump);
    assert!(
        !dumped.contains("secret-from-env") && !dumped.contains("pk-from-env"),
        "{dumped}"
    );
    std::fs::write(dir.path().join("dump.yml"), &dumped).expect("write");
    let again = run(
        &[&["config", "diff", "dump.yml"][..], &db].concat(),
        dir.path(),
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        stdout(&again).trim(),
        "Summary (would change): created 0, updated 0, deleted 0"
    );
}

#[test]
fn a_bad_file_exits_non_zero_naming_the_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = EXAMPLE.replace("mandatory_scope: true", "mandatory_scope: maybe");
    std::fs::write(dir.path().join("bad.yml"), bad).expect("write");
    let sync = run(
        &["config", "sync", "bad.yml", "--database", "t.db"],
        dir.path(),
    );
    assert!(!sync.status.success());
    assert!(
        stderr(&sync).contains("services[0].plugins[0].config.mandatory_scope"),
        "{}",
        stderr(&sync)
    );
    // Nor does the service start on it.
    let start = run(
        &[
            "--declarative-config",
            "bad.yml",
            "--database",
            "t.db",
            "--admin-listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert!(!start.status.success());
    assert!(
        stdout(&start).contains("config.mandatory_scope"),
        "{}",
        stdout(&start)
    );
}

#[test]
fn the_declarative_config_is_synced_before_the_service_listens() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("kong.yml"), EXAMPLE).expect("write");
    let mut service = Command::new(BIN)
        .args([
            "--database",
            "t.db",
            "--admin-listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path())
        .env("TOKEN_SERVICE_DECLARATIVE_CONFIG", "kong.yml")
        .env("STEP_ON_PROVISION_KEY", "pk-from-env")
        .env("SHOE_FLY_SHOE_SECRET", "secret-from-env")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start");
    // The log says when the admin API listens; the sync must be done by then.
    let log = service.stdout.take().expect("piped");
    let (lines, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(log).lines().map_while(Result::ok) {
            if line.contains("admin API listening") {
                let _ = lines.send(());
            }
        }
    });
    let started = listening.recv_timeout(Duration::from_secs(30)).is_ok();
    let diff = run(
        &["config", "diff", "kong.yml", "--database", "t.db"],
        dir.path(),
    );
    let _ = service.kill();
    let _ = service.wait();
    assert!(started, "the service did not start");
    let synced = stdout(&diff).contains("created 0, updated 0, deleted 0");
    assert!(synced, "the file was not synced at start-up");
}
