//! The docker cloud's settings: the image nodes run, and each region's engines with the
//! address the other hosts reach each one at.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::runtime::node::valid_region_name;
use crate::runtime::{RegionNames, SettingError};

/// The cloud this runtime serves.
pub const CLOUD: &str = crate::catalog::DOCKER_CLOUD;

/// One Docker Engine: where the provider reaches its API, and where the other hosts and the
/// clients reach the ports it publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DockerHost {
    /// The engine's API: `unix:///var/run/docker.sock`; `tcp://host:2376` (with the region's
    /// `cert_path`, TLS with a client certificate; without it, plain HTTP); or
    /// `ssh://user@host[:port]` (the `ssh` client with your SSH configuration and keys, and the
    /// `docker` CLI on the host, as `docker -H ssh://` uses them).
    pub url: String,
    /// The address nodes on this engine are published and announced at.
    pub advertise_address: String,
}

/// The files of a TLS directory, in the order a client needs them: key, certificate, CA.
pub const TLS_FILES: [&str; 3] = ["key.pem", "cert.pem", "ca.pem"];

/// A region of the docker cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DockerRegion {
    /// The region's name, as resources give it in `region`.
    pub name: String,
    /// The engines of the region; nodes of one service are spread over them.
    pub hosts: Vec<DockerHost>,
    /// For the region's `tcp://` engines, which require TLS (`dockerd --tlsverify`): a
    /// directory holding `ca.pem`, `cert.pem` and `key.pem`, as `DOCKER_CERT_PATH` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_path: Option<String>,
}

/// The docker cloud: nodes as containers on Docker Engines, regions as groups of hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DockerSettings {
    /// An image every engine has that runs `/usr/local/bin/valkey-server` as user 999 with
    /// `/data` writable by it. The provider never pulls it.
    pub image: String,
    /// One block per region: its name and its hosts.
    #[serde(rename = "region", default)]
    #[schemars(extend("x-block" = true))]
    pub regions: Vec<DockerRegion>,
}

impl DockerSettings {
    pub fn region_names(&self) -> RegionNames {
        RegionNames {
            cloud: CLOUD.to_string(),
            names: self.regions.iter().map(|r| r.name.clone()).collect(),
        }
    }

    /// Every problem the settings have that can be seen without contacting an engine.
    pub fn validate(&self) -> Vec<SettingError> {
        let mut errors = Vec::new();
        let mut error = |summary: &str, detail: String| {
            errors.push(SettingError {
                attribute: "docker",
                key: None,
                summary: summary.to_string(),
                detail,
            })
        };
        if self.image.trim().is_empty() || self.image.chars().any(char::is_whitespace) {
            error(
                "Invalid docker image",
                format!(
                    "image {:?} is not an image name; name an image every engine has",
                    self.image
                ),
            );
        }
        if self.regions.is_empty() {
            error(
                "No docker regions",
                "declare at least one region block with its hosts".into(),
            );
        }
        let mut names: Vec<&str> = Vec::new();
        let mut advertised: Vec<&str> = Vec::new();
        for region in &self.regions {
            if !valid_region_name(&region.name) {
                error(
                    "Invalid region name",
                    format!(
                        "region name {:?} is not valid: use lowercase letters, digits and hyphens, starting with a \
                         letter, at most 63 characters",
                        region.name
                    ),
                );
            } else if names.contains(&region.name.as_str()) {
                error(
                    "Region declared twice",
                    format!("region name {:?} is declared twice", region.name),
                );
            }
            names.push(&region.name);
            if region.hosts.is_empty() {
                error(
                    "Region without hosts",
                    format!("region {:?} has no hosts; give it at least one", region.name),
                );
            }
            if let Err(problem) = check_cert_path(region) {
                error(
                    "Invalid cert_path",
                    format!(
                        "cert_path {:?} of region {:?}: {problem}",
                        region.cert_path.as_deref().unwrap_or_default(),
                        region.name
                    ),
                );
            }
            for host in &region.hosts {
                if let Err(problem) = check_url(&host.url) {
                    error(
                        "Invalid engine url",
                        format!("url {:?} of a host in region {:?}: {problem}", host.url, region.name),
                    );
                }
                if host.advertise_address.parse::<std::net::IpAddr>().is_err() {
                    error(
                        "Invalid advertise_address",
                        format!(
                            "advertise_address {:?} of host {} is not an IP address",
                            host.advertise_address, host.url
                        ),
                    );
                } else if advertised.contains(&host.advertise_address.as_str()) {
                    error(
                        "Duplicate advertise_address",
                        format!(
                            "advertise_address {} is given to two hosts; each host needs its own",
                            host.advertise_address
                        ),
                    );
                }
                advertised.push(&host.advertise_address);
            }
        }
        errors
    }
}

/// Why a region's `cert_path` cannot be used, if it cannot: it is for `tcp://` engines, and
/// must hold the three files.
fn check_cert_path(region: &DockerRegion) -> Result<(), String> {
    let Some(dir) = &region.cert_path else { return Ok(()) };
    if !region.hosts.iter().any(|h| h.url.starts_with("tcp://")) {
        return Err("TLS is for tcp:// engines and the region has none; remove cert_path or use tcp:// urls".into());
    }
    let missing: Vec<&str> = TLS_FILES
        .into_iter()
        .filter(|f| !std::path::Path::new(dir).join(f).is_file())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} missing there; the directory must hold ca.pem, cert.pem and key.pem",
            missing.join(", ")
        ))
    }
}

/// Why an engine URL cannot be used, if it cannot.
pub fn check_url(url: &str) -> Result<(), String> {
    let supported = "use unix:///path/to/docker.sock, tcp://host:port or ssh://user@host";
    if let Some(path) = url.strip_prefix("unix://") {
        if path.starts_with('/') && !path.contains('\0') {
            return Ok(());
        }
        return Err(format!("the socket path must be absolute; {supported}"));
    }
    if let Some(rest) = url.strip_prefix("tcp://") {
        let valid = rest
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
        if valid {
            return Ok(());
        }
        return Err(format!("give a host and a port; {supported}"));
    }
    if let Some(rest) = url.strip_prefix("ssh://") {
        let (userinfo, host_port) = rest.rsplit_once('@').unwrap_or(("", rest));
        let host = match host_port.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok_and(|p| p > 0) => host,
            Some(_) => return Err(format!("the port is not a number; {supported}")),
            None => host_port,
        };
        let user_ok = rest.contains('@') != userinfo.is_empty() && !userinfo.contains([':', '/']);
        let host_ok = !host.is_empty() && !host.contains(['/', '@', '?', '#', ' ']);
        if user_ok && host_ok {
            return Ok(());
        }
        return Err(format!("give a host, and a user before @ if needed; {supported}"));
    }
    Err(format!("the scheme is not supported; {supported}"))
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn engine_urls_are_sockets_tcp_or_ssh() {
        for good in [
            "unix:///run/docker.sock",
            "tcp://10.0.0.1:2376",
            "ssh://ops@eu-1.example",
            "ssh://eu-1.example",
            "ssh://ops@10.0.0.1:2222",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "http://engine:2375",
            "unix://relative.sock",
            "tcp://engine",
            "ssh://",
            "ssh://ops@",
            "ssh://engine:ssh",
            "ssh://a:b@engine",
            "ssh://ops@engine/path",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
