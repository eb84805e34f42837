//! The go-plugin handshake environment: the input is split at NUL bytes into the values of
//! the variables the plugin reads. Anything must give a configuration or an error, and a
//! client certificate that is accepted must set up AutoMTLS or fail cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use terraform_provider_valkey::tfplug::handshake::{MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE, read_environment};
use terraform_provider_valkey::tfplug::tls::auto_mtls;

const VARIABLES: [&str; 4] = [
    "PLUGIN_PROTOCOL_VERSIONS",
    "PLUGIN_MIN_PORT",
    "PLUGIN_MAX_PORT",
    "PLUGIN_CLIENT_CERT",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let values: Vec<&str> = text.split('\0').collect();
    let get = |name: &str| {
        if name == MAGIC_COOKIE_KEY {
            return Some(MAGIC_COOKIE_VALUE.to_string());
        }
        let at = VARIABLES.iter().position(|v| *v == name)?;
        values.get(at).map(|v| v.to_string())
    };
    if let Ok(config) = read_environment(get) {
        if let Some((min, max)) = config.port_range {
            assert!(min <= max, "port range {min}..{max} is reversed");
        }
        if let Some(pem) = config.client_cert_pem {
            let _ = auto_mtls(&pem);
        }
    }
});
