//! An async connection to one node, with the few commands the provider needs.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, TlsCertificates,
};
use tokio::time::Instant;

use super::info::Info;

#[derive(Debug, thiserror::Error)]
pub enum ValkeyError {
    #[error("cannot connect to the node at {addr}: {source}")]
    Connect { addr: String, source: redis::RedisError },
    #[error("the node at {addr} refused {command}: {source}")]
    Command {
        addr: String,
        command: &'static str,
        source: redis::RedisError,
    },
    #[error("the node at {addr} did not become ready within {waited:?}: {last}")]
    NotReady {
        addr: String,
        waited: Duration,
        last: String,
    },
}

impl ValkeyError {
    /// Whether the node answered with an error (it refused what it was asked), rather than
    /// the connection failing under the request (the node stopping, say).
    pub fn is_refusal(&self) -> bool {
        match self {
            ValkeyError::Command { source, .. } => {
                !(source.is_io_error() || source.is_connection_dropped() || source.is_timeout())
            }
            _ => false,
        }
    }
}

/// A member of a group that speaks TLS, as TLS knows it: the group's CA certificate, which it
/// trusts, and a certificate the CA issued it with its key (PEM), which it presents: a node
/// serves with it, a client shows it to nodes that verify their clients.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A client of the node at `host:port`: over TLS trusting only the group's CA when `tls` is
/// given (the node's certificate must name `host`), else plaintext.
fn client_for(
    host: &str,
    port: u16,
    auth: RedisConnectionInfo,
    tls: Option<&TlsIdentity>,
) -> redis::RedisResult<redis::Client> {
    let info = (host, port).into_connection_info()?.set_redis_settings(auth);
    let Some(tls) = tls else {
        return redis::Client::open(info);
    };
    // The process may link more than one rustls crypto provider: pick one once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let info = info.set_addr(ConnectionAddr::TcpTls {
        host: host.to_string(),
        port,
        insecure: false,
        tls_params: None,
    });
    redis::Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls: Some(ClientTlsConfig {
                client_cert: tls.cert_pem.clone().into_bytes(),
                client_key: tls.key_pem.clone().into_bytes(),
            }),
            root_cert: Some(tls.ca_pem.clone().into_bytes()),
        },
    )
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"(redacted)")
            .finish_non_exhaustive()
    }
}

pub struct NodeClient {
    addr: String,
    conn: MultiplexedConnection,
}

/// How long a single request may take before the node counts as unresponsive.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

impl NodeClient {
    /// Connects and authenticates as the default user.
    pub async fn connect(
        host: &str,
        port: u16,
        password: &str,
        tls: Option<&TlsIdentity>,
        timeout: Duration,
    ) -> Result<Self, ValkeyError> {
        Self::connect_as(host, port, None, password, tls, timeout).await
    }

    /// Connects and authenticates as `user` (the default user when None or "default").
    pub async fn connect_as(
        host: &str,
        port: u16,
        user: Option<&str>,
        password: &str,
        tls: Option<&TlsIdentity>,
        timeout: Duration,
    ) -> Result<Self, ValkeyError> {
        let addr = format!("{host}:{port}");
        let connect_error = |source| ValkeyError::Connect {
            addr: addr.clone(),
            source,
        };
        let mut auth = RedisConnectionInfo::default();
        if !password.is_empty() {
            auth = auth.set_password(password);
        }
        if let Some(user) = user.filter(|u| *u != "default") {
            auth = auth.set_username(user);
        }
        let client = client_for(host, port, auth, tls).map_err(connect_error)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(connect_error)?;
        Ok(NodeClient { addr, conn })
    }

    /// Connects as soon as the node answers PING (it may still be starting or loading data).
    pub async fn wait_ready(
        host: &str,
        port: u16,
        password: &str,
        tls: Option<&TlsIdentity>,
        within: Duration,
    ) -> Result<Self, ValkeyError> {
        let deadline = Instant::now() + within;
        let mut pause = Duration::from_millis(2);
        loop {
            let attempt = async {
                let mut client = Self::connect(host, port, password, tls, Duration::from_millis(500)).await?;
                client.ping().await?;
                Ok::<_, ValkeyError>(client)
            };
            let last = match attempt.await {
                Ok(client) => return Ok(client),
                Err(e) => e.to_string(),
            };
            if Instant::now() + pause > deadline {
                return Err(ValkeyError::NotReady {
                    addr: format!("{host}:{port}"),
                    waited: within,
                    last,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    pub fn address(&self) -> &str {
        &self.addr
    }

    async fn query<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
        name: &'static str,
    ) -> Result<T, ValkeyError> {
        cmd.query_async(&mut self.conn)
            .await
            .map_err(|source| ValkeyError::Command {
                addr: self.addr.clone(),
                command: name,
                source,
            })
    }

    pub async fn ping(&mut self) -> Result<(), ValkeyError> {
        let _: String = self.query(&redis::cmd("PING"), "PING").await?;
        Ok(())
    }

    /// INFO with the given sections ("server", "replication", ...).
    pub async fn info(&mut self, sections: &[&str]) -> Result<Info, ValkeyError> {
        let text: String = self.query(redis::cmd("INFO").arg(sections), "INFO").await?;
        Ok(Info::parse(&text))
    }

    pub async fn config_get(&mut self, names: &[&str]) -> Result<HashMap<String, String>, ValkeyError> {
        self.query(redis::cmd("CONFIG").arg("GET").arg(names), "CONFIG GET")
            .await
    }

    /// INFO replication and server, and CONFIG GET of `settings`, in one round trip.
    pub async fn replication_and_settings(
        &mut self,
        settings: &[&str],
    ) -> Result<(Info, HashMap<String, String>), ValkeyError> {
        let mut pipe = redis::pipe();
        pipe.cmd("INFO")
            .arg("replication")
            .arg("server")
            .cmd("CONFIG")
            .arg("GET")
            .arg(settings);
        let (text, values): (String, HashMap<String, String>) =
            pipe.query_async(&mut self.conn)
                .await
                .map_err(|source| ValkeyError::Command {
                    addr: self.addr.clone(),
                    command: "INFO/CONFIG GET",
                    source,
                })?;
        Ok((Info::parse(&text), values))
    }

    /// Any command, for the few Sentinel and replication commands used once each.
    pub async fn command<T: redis::FromRedisValue>(&mut self, args: &[&str]) -> Result<T, ValkeyError> {
        let mut cmd = redis::cmd(args.first().copied().unwrap_or("PING"));
        for a in args.iter().skip(1) {
            cmd.arg(*a);
        }
        self.query(&cmd, "a command").await
    }

    /// ACL with `args` (`SETUSER NAME RULES...`, `DELUSER NAME`): the node's users change, and
    /// CONFIG REWRITE keeps them in its config file for a restart the provider does not make.
    pub async fn acl_change(&mut self, args: &[String]) -> Result<(), ValkeyError> {
        let _: redis::Value = self.query(redis::cmd("ACL").arg(args), "an ACL change").await?;
        let _: String = self
            .query(redis::cmd("CONFIG").arg("REWRITE"), "CONFIG REWRITE")
            .await?;
        Ok(())
    }

    /// The node's users as ACL LIST lines (`user NAME on #HASH ~keys ... +@category ...`).
    pub async fn acl_list(&mut self) -> Result<Vec<String>, ValkeyError> {
        self.query(redis::cmd("ACL").arg("LIST"), "ACL LIST").await
    }

    /// Makes the node replicate `host:port` as `user`, or stop replicating when None.
    pub async fn replicate(&mut self, upstream: Option<(&str, u16, &str, &str)>) -> Result<(), ValkeyError> {
        match upstream {
            Some((host, port, user, password)) => {
                self.config_set(&[("masteruser", user.to_string()), ("masterauth", password.to_string())])
                    .await?;
                let _: String = self.command(&["REPLICAOF", host, &port.to_string()]).await?;
            }
            None => {
                let _: String = self.command(&["REPLICAOF", "NO", "ONE"]).await?;
            }
        }
        Ok(())
    }

    /// Holds every write (and everything that may replicate) for up to `millis`, while reads go
    /// on; a node demoted meanwhile refuses the held writes when they run.
    pub async fn pause_writes(&mut self, millis: u64) -> Result<(), ValkeyError> {
        let _: String = self.command(&["CLIENT", "PAUSE", &millis.to_string(), "WRITE"]).await?;
        Ok(())
    }

    pub async fn unpause(&mut self) -> Result<(), ValkeyError> {
        let _: String = self.command(&["CLIENT", "UNPAUSE"]).await?;
        Ok(())
    }

    /// Makes a node that speaks TLS read its certificate files again (any CONFIG SET of a TLS
    /// setting reloads them all), so a renewed certificate takes effect without a restart.
    pub async fn reload_tls(&mut self) -> Result<(), ValkeyError> {
        let files = self.config_get(&["tls-cert-file"]).await?;
        match files.get("tls-cert-file").filter(|f| !f.is_empty()) {
            Some(file) => self.config_set(&[("tls-cert-file", file.clone())]).await,
            None => Ok(()),
        }
    }

    /// Sets settings on the running node (one atomic CONFIG SET).
    pub async fn config_set(&mut self, settings: &[(&str, String)]) -> Result<(), ValkeyError> {
        if settings.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("SET");
        for (name, value) in settings {
            cmd.arg(*name).arg(value);
        }
        self.query(&cmd, "CONFIG SET").await
    }
}
