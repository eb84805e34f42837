//! The docker cloud's settings: the image nodes run, and each region's engines with the
//! address the other hosts reach each one at.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::runtime::{RegionNames, SettingError};

/// The cloud this runtime serves.
pub const CLOUD: &str = "docker";

/// One Docker Engine: where the provider reaches its API, and where the other hosts and the
/// clients reach the ports it publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DockerHost {
    /// The engine's API: `unix:///var/run/docker.sock`, or `tcp://host:2375`.
    pub url: String,
    /// The address nodes on this engine are published and announced at.
    pub advertise_address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DockerRegion {
    /// The region's name, as resources give it in `region`.
    pub name: String,
    /// The engines of the region; nodes of one service are spread over them.
    pub hosts: Vec<DockerHost>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DockerSettings {
    /// An image that runs valkey-server as user 999 with `/data` writable by it.
    pub image: String,
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
        if self.image.trim().is_empty() {
            error(
                "Invalid docker image",
                "image is empty; name an image every engine has".into(),
            );
        }
        if self.regions.is_empty() {
            error("No docker regions", "declare at least one region with its hosts".into());
        }
        let mut advertised: Vec<&str> = Vec::new();
        for region in &self.regions {
            if region.hosts.is_empty() {
                error("Region without hosts", format!("region {:?} has no hosts", region.name));
            }
            for host in &region.hosts {
                if host.advertise_address.parse::<std::net::IpAddr>().is_err() {
                    error(
                        "Invalid advertise_address",
                        format!("{:?} (host {}) is not an IP address", host.advertise_address, host.url),
                    );
                }
                if advertised.contains(&host.advertise_address.as_str()) {
                    error(
                        "Duplicate advertise_address",
                        format!(
                            "{} is the address of two hosts; each host needs its own",
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
