//! The factory: which runtime serves which `cloud`, built from the provider block's settings.
//! Adding a runtime means adding its folder, its settings here and its arm in [`configure`].

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Runtime;
use super::docker::{self, DockerRuntime, DockerSettings};
use super::error::SettingError;
use super::local::{self, LocalRuntime, LocalSettings};
use super::node::RegionNames;

/// Every cloud's settings in the provider block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CloudSettings {
    #[serde(flatten)]
    pub local: LocalSettings,
    /// The docker cloud (`cloud = "docker"` on a resource): nodes as containers on Docker
    /// Engines. Leave it out to use the local cloud only.
    #[schemars(extend("x-block" = true))]
    pub docker: Option<DockerSettings>,
}

/// The runtimes of the configured clouds, by cloud name.
#[derive(Clone, Default)]
pub struct Clouds {
    runtimes: BTreeMap<&'static str, Arc<dyn Runtime>>,
}

impl Clouds {
    pub fn get(&self, cloud: &str) -> Option<Arc<dyn Runtime>> {
        self.runtimes.get(cloud).cloned()
    }

    /// Every configured cloud with its runtime.
    pub fn all(&self) -> impl Iterator<Item = (&'static str, &Arc<dyn Runtime>)> {
        self.runtimes.iter().map(|(c, r)| (*c, r))
    }
}

/// What can be checked of the settings without touching any machine, and the regions each
/// cloud offers when they are known.
pub fn validate(settings: &CloudSettings) -> (BTreeMap<String, RegionNames>, Vec<SettingError>) {
    let (regions, mut errors) = local::settings::validate(&settings.local);
    let mut known: BTreeMap<String, RegionNames> = regions
        .map(|r| (local::CLOUD.to_string(), r.names()))
        .into_iter()
        .collect();
    if let Some(docker) = &settings.docker {
        let problems = docker.validate();
        if problems.is_empty() {
            known.insert(docker::CLOUD.to_string(), docker.region_names());
        }
        errors.extend(problems);
    }
    (known, errors)
}

/// Builds the runtime of every cloud.
pub fn configure(settings: &CloudSettings) -> Result<Clouds, Vec<SettingError>> {
    let local = LocalRuntime::configure(&settings.local)?;
    let mut runtimes = BTreeMap::from([(local::CLOUD, Arc::new(local) as Arc<dyn Runtime>)]);
    if let Some(docker) = &settings.docker {
        runtimes.insert(docker::CLOUD, Arc::new(DockerRuntime::configure(docker)?));
    }
    Ok(Clouds { runtimes })
}
