//! The Docker engine's side of the fault tests: the compose project's containers (found by the
//! labels both `docker compose` and `docker-compose` 1.29 put on them) and the faults, each
//! undone by a guard when the test ends, whether it passed, failed or panicked, so one failing
//! fault never leaves the next test a broken cluster.

use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

/// `docker ARGS`: its standard output, trimmed, or what went wrong (with its stderr).
pub fn docker(args: &[&str]) -> Result<String, String> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker {args:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "docker {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// `docker ARGS`, which must succeed: a fault that cannot be made is a failed test, not a
/// pass.
pub fn must(args: &[&str]) -> String {
    docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// The compose project under test.
pub struct Project {
    pub name: String,
}

impl Project {
    pub fn new(name: &str) -> Project {
        Project {
            name: name.to_string(),
        }
    }

    /// The one container of compose service `service` (running or not).
    pub fn container(&self, service: &str) -> Container {
        let ids = must(&[
            "ps",
            "--all",
            "--quiet",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]);
        let ids: Vec<&str> = ids.lines().collect();
        assert_eq!(
            ids.len(),
            1,
            "compose project {} has {} containers for service {service}: {ids:?}",
            self.name,
            ids.len()
        );
        Container {
            id: ids[0].to_string(),
            service: service.to_string(),
        }
    }
}

/// One container, by its full id.
#[derive(Clone, Debug)]
pub struct Container {
    pub id: String,
    pub service: String,
}

impl Container {
    fn inspect(&self) -> Value {
        let text = must(&["inspect", &self.id]);
        let all: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("docker inspect {}: not JSON ({e})", self.service));
        all[0].clone()
    }

    /// The networks it is attached to, each with its DNS aliases there (the compose service
    /// name among them): what a reconnection must give back.
    pub fn networks(&self) -> BTreeMap<String, Vec<String>> {
        let inspected = self.inspect();
        let Some(networks) = inspected["NetworkSettings"]["Networks"].as_object() else {
            return BTreeMap::new();
        };
        networks
            .iter()
            .map(|(name, settings)| {
                let aliases = settings["Aliases"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            // Docker adds the short id itself.
                            .filter(|alias| !self.id.starts_with(alias))
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                (name.clone(), aliases)
            })
            .collect()
    }

    /// Its address on `network`: the host reaches a container's bridge address directly
    /// (Linux), so a test can call a listener compose does not publish.
    pub fn address_on(&self, network: &str) -> Option<String> {
        self.inspect()["NetworkSettings"]["Networks"][network]["IPAddress"]
            .as_str()
            .filter(|ip| !ip.is_empty())
            .map(str::to_string)
    }

    /// Where the host reaches its published `port` (`docker port`), as `host:port`.
    pub fn published(&self, port: u16) -> String {
        let mapped = must(&["port", &self.id, &format!("{port}/tcp")]);
        let first = mapped
            .lines()
            .next()
            .unwrap_or_else(|| panic!("{} does not publish port {port}", self.service));
        first
            .replace("0.0.0.0", "127.0.0.1")
            .replace("[::]", "127.0.0.1")
    }

    /// When its process last started: unchanged means the container was not restarted.
    pub fn started_at(&self) -> String {
        self.inspect()["State"]["StartedAt"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `docker kill` (SIGKILL): stays down until the guard starts it again.
    pub fn kill(&self) -> Stopped {
        must(&["kill", &self.id]);
        Stopped {
            container: self.clone(),
            started: false,
        }
    }

    /// `docker restart`: stop (SIGTERM, then SIGKILL after 2 s) and start again.
    pub fn restart(&self) {
        must(&["restart", "--time", "2", &self.id]);
    }

    /// Cuts it from `networks` (`docker network disconnect`); the guard connects it back with
    /// the same aliases.
    pub fn disconnect(&self, networks: &[String]) -> Cut {
        let attached = self.networks();
        let mut cut = Cut {
            container: self.clone(),
            networks: Vec::new(),
        };
        for network in networks {
            let aliases = attached.get(network).cloned().unwrap_or_else(|| {
                panic!("{} is not on network {network}: {attached:?}", self.service)
            });
            must(&["network", "disconnect", network, &self.id]);
            cut.networks.push((network.clone(), aliases));
        }
        cut
    }
}

/// A killed container; started again by [`Stopped::start`] or when dropped.
pub struct Stopped {
    container: Container,
    started: bool,
}

impl Stopped {
    pub fn start(&mut self) {
        if !self.started {
            self.started = true;
            must(&["start", &self.container.id]);
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.started {
            self.started = true;
            if let Err(e) = docker(&["start", &self.container.id]) {
                eprintln!("could not start {} again: {e}", self.container.service);
            }
        }
    }
}

/// A container cut from some networks; reconnected by [`Cut::restore`] or when dropped.
pub struct Cut {
    container: Container,
    networks: Vec<(String, Vec<String>)>,
}

impl Cut {
    /// Connects it back to every network it was cut from, with the aliases it had there.
    pub fn restore(&mut self) {
        if let Err(e) = self.reconnect() {
            panic!("{e}");
        }
    }

    fn reconnect(&mut self) -> Result<(), String> {
        for (network, aliases) in std::mem::take(&mut self.networks) {
            let mut args = vec!["network", "connect"];
            for alias in &aliases {
                args.extend(["--alias", alias.as_str()]);
            }
            args.extend([network.as_str(), self.container.id.as_str()]);
            docker(&args)
                .map_err(|e| format!("could not reconnect {}: {e}", self.container.service))?;
        }
        Ok(())
    }
}

impl Drop for Cut {
    /// Never a second panic (that would abort the test binary): a failed reconnection is
    /// reported, and the next test's health wait fails on it.
    fn drop(&mut self) {
        if let Err(e) = self.reconnect() {
            eprintln!("{e}");
        }
    }
}
