//! go-plugin's handshake: how Terraform and a plugin process agree on a protocol and an
//! address. The plugin checks the environment Terraform sets, then prints one line on stdout:
//! `CORE-VERSION|APP-VERSION|NETWORK|ADDRESS|PROTOCOL|SERVER-CERT`.

use base64::Engine;

/// Terraform proves it launched the plugin with this environment variable and value.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
pub const MAGIC_COOKIE_VALUE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// go-plugin's own protocol version.
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// The tfplugin protocol major version this provider speaks.
pub const APP_PROTOCOL_VERSION: u32 = 6;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error(
        "terraform-provider-valkey is a Terraform provider plugin: Terraform (or OpenTofu) starts it \
         itself. Declare it in a configuration's required_providers, install it as README.md \
         describes, and run `terraform init` and `terraform apply`."
    )]
    NotLaunchedByTerraform,
    #[error(
        "this provider speaks plugin protocol {APP_PROTOCOL_VERSION}, but the client offered only \
         {0:?}; use Terraform 1.0 or later, or OpenTofu"
    )]
    UnsupportedProtocol(String),
    #[error("invalid {name} {value:?}: expected a port number between 1 and 65535")]
    BadPort { name: &'static str, value: String },
}

/// What the client told the plugin through the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeConfig {
    /// Inclusive range to listen in; `None` lets the system pick any free port.
    pub port_range: Option<(u16, u16)>,
    /// PEM of the client's certificate when the client wants AutoMTLS.
    pub client_cert_pem: Option<String>,
}

/// Reads and checks the handshake environment through `get` (std::env::var in production).
pub fn read_environment(get: impl Fn(&str) -> Option<String>) -> Result<HandshakeConfig, HandshakeError> {
    if get(MAGIC_COOKIE_KEY).as_deref() != Some(MAGIC_COOKIE_VALUE) {
        return Err(HandshakeError::NotLaunchedByTerraform);
    }
    if let Some(offered) = get("PLUGIN_PROTOCOL_VERSIONS").filter(|v| !v.trim().is_empty()) {
        let speaks = offered
            .split(',')
            .any(|v| v.trim().parse::<u32>() == Ok(APP_PROTOCOL_VERSION));
        if !speaks {
            return Err(HandshakeError::UnsupportedProtocol(offered));
        }
    }
    let port = |name: &'static str| -> Result<Option<u16>, HandshakeError> {
        match get(name).filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(value) => match value.trim().parse::<u16>() {
                Ok(p) if p > 0 => Ok(Some(p)),
                _ => Err(HandshakeError::BadPort { name, value }),
            },
        }
    };
    let port_range = match (port("PLUGIN_MIN_PORT")?, port("PLUGIN_MAX_PORT")?) {
        (None, None) => None,
        (min, max) => {
            let (min, max) = (min.unwrap_or(1024), max.unwrap_or(u16::MAX));
            Some((min.min(max), max.max(min)))
        }
    };
    Ok(HandshakeConfig {
        port_range,
        client_cert_pem: get("PLUGIN_CLIENT_CERT").filter(|c| !c.trim().is_empty()),
    })
}

/// The line announcing the listener; the server certificate travels as unpadded base64 DER.
pub fn handshake_line(address: std::net::SocketAddr, server_cert_der: Option<&[u8]>) -> String {
    let mut line = format!("{CORE_PROTOCOL_VERSION}|{APP_PROTOCOL_VERSION}|tcp|{address}|grpc");
    if let Some(der) = server_cert_der {
        line.push('|');
        line.push_str(&base64::engine::general_purpose::STANDARD_NO_PAD.encode(der));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn refuses_to_run_without_the_magic_cookie() {
        assert_eq!(read_environment(env(&[])), Err(HandshakeError::NotLaunchedByTerraform));
        let wrong = env(&[(MAGIC_COOKIE_KEY, "nope")]);
        assert_eq!(read_environment(wrong), Err(HandshakeError::NotLaunchedByTerraform));
    }

    #[test]
    fn requires_protocol_six_when_versions_are_offered() {
        let ok = env(&[
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
            ("PLUGIN_PROTOCOL_VERSIONS", "5,6"),
        ]);
        assert!(read_environment(ok).is_ok());
        let old = env(&[
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
            ("PLUGIN_PROTOCOL_VERSIONS", "4,5"),
        ]);
        assert!(matches!(
            read_environment(old),
            Err(HandshakeError::UnsupportedProtocol(_))
        ));
    }

    #[test]
    fn honours_the_port_range_and_client_certificate() {
        let e = env(&[
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
            ("PLUGIN_MIN_PORT", "10000"),
            ("PLUGIN_MAX_PORT", "10010"),
            ("PLUGIN_CLIENT_CERT", "-----BEGIN CERTIFICATE-----"),
        ]);
        let cfg = read_environment(e).unwrap();
        assert_eq!(cfg.port_range, Some((10000, 10010)));
        assert!(cfg.client_cert_pem.is_some());
        let bad = env(&[(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE), ("PLUGIN_MIN_PORT", "http")]);
        assert!(matches!(read_environment(bad), Err(HandshakeError::BadPort { .. })));
    }

    #[test]
    fn handshake_line_has_unpadded_base64_certificate() {
        let addr = "127.0.0.1:4242".parse().unwrap();
        assert_eq!(handshake_line(addr, None), "1|6|tcp|127.0.0.1:4242|grpc");
        // 4 bytes would need "==" padding in standard base64.
        assert_eq!(
            handshake_line(addr, Some(&[1, 2, 3, 4])),
            "1|6|tcp|127.0.0.1:4242|grpc|AQIDBA"
        );
    }
}
