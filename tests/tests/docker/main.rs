//! Tests against the compose stack that `make test-docker` brings up with `docker compose up`
//! (tests/src/docker.rs): they reach it through its published ports, as its user does. They
//! are ignored by a plain `cargo test`, which has no such stack; `make test-docker` runs them
//! with `--ignored`.

mod tutorial;
