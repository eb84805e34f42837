//! Parsing `valkey://USER:PASSWORD@HOST:PORT` URIs of servers the provider does not manage.

use super::config_file::UpstreamAuth;

/// Parses a server URI; `redis://` is accepted too, since many tools still write it.
/// Messages never repeat the URI, which holds a password.
pub fn parse(uri: &str) -> Result<UpstreamAuth, String> {
    let url = url::Url::parse(uri)
        .map_err(|e| format!("not a valid URI ({e}); write it as valkey://USER:PASSWORD@HOST:PORT"))?;
    if !matches!(url.scheme(), "valkey" | "redis") {
        return Err(format!(
            "scheme {:?} is not supported; use valkey://USER:PASSWORD@HOST:PORT (TLS schemes need a TLS-enabled build)",
            url.scheme()
        ));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or("the URI has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let password = url.password().map(decode).transpose()?.unwrap_or_default();
    let user = match decode(url.username())? {
        u if u.is_empty() => "default".to_string(),
        u => u,
    };
    Ok(UpstreamAuth {
        host,
        port: url.port().unwrap_or(6379),
        user,
        password,
    })
}

fn decode(part: &str) -> Result<String, String> {
    url::form_urlencoded::parse(format!("x={part}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| "the URI's credentials are not valid percent-encoding".to_string())
}

/// The URI form of an upstream, for state.
pub fn format(up: &UpstreamAuth) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "valkey://{}:{}@{}:{}",
        enc(&up.user),
        enc(&up.password),
        up.host,
        up.port
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_password_host_and_port() {
        let up = parse("valkey://repl:s3cr%40t@127.0.0.9:7001").unwrap();
        assert_eq!(
            (up.user.as_str(), up.password.as_str(), up.host.as_str(), up.port),
            ("repl", "s3cr@t", "127.0.0.9", 7001)
        );
        assert_eq!(parse(&format(&up)).unwrap(), up);
    }

    #[test]
    fn defaults_user_and_port() {
        let up = parse("redis://:pw@localhost").unwrap();
        assert_eq!((up.user.as_str(), up.port), ("default", 6379));
    }

    #[test]
    fn refuses_other_schemes_and_garbage_without_echoing_secrets() {
        let err = parse("rediss://u:topsecret@h:1").unwrap_err();
        assert!(err.contains("rediss") && !err.contains("topsecret"));
        let err = parse("not a uri topsecret").unwrap_err();
        assert!(!err.contains("topsecret"));
        assert!(parse("valkey://").is_err());
    }
}
