//! One Docker Engine, through its API (bollard): the few container, volume and archive calls
//! the docker runtime needs, each bounded in time so an engine that does not answer fails the
//! call instead of hanging it.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder, StopContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::TryStreamExt;

use super::settings::TLS_FILES;
use super::ssh_transport;
use crate::runtime::RuntimeError;

/// Longest a single Engine API call may take (a stop waits for its grace period on top).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a question about one container may take: refresh asks it of every node, and a host
/// that is down must not hold a plan long.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an engine that did not answer is not asked again.
const SILENT_FOR: Duration = Duration::from_secs(30);
/// How long a container may take to save and exit when stopped.
pub const STOP_GRACE_SECONDS: i32 = 30;

/// Why an engine call failed, as the runtime tells it.
#[derive(Debug)]
pub enum EngineError {
    /// The engine answered that no such container or volume exists.
    NotFound,
    /// The name is taken (a container of that name exists).
    Conflict,
    /// A port could not be published (taken on the host).
    PortTaken(String),
    /// The engine could not be reached or did not answer in time.
    Unreachable(String),
    Other(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::NotFound => write!(f, "not found"),
            EngineError::Conflict => write!(f, "the name is taken"),
            EngineError::PortTaken(m) | EngineError::Unreachable(m) | EngineError::Other(m) => write!(f, "{m}"),
        }
    }
}

/// `create_container` from the type name of the future of bollard's `Docker::create_container`
/// (or of ours, `Engine::read_file`), for the debug log of each call's time.
fn call_label(type_name: &str) -> &str {
    ["Engine::", "Docker::"]
        .iter()
        .find_map(|owner| {
            let rest = &type_name[type_name.find(owner)? + owner.len()..];
            Some(
                &rest[..rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len())],
            )
        })
        .unwrap_or(type_name)
}

fn classify(e: bollard::errors::Error) -> EngineError {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => EngineError::NotFound,
        bollard::errors::Error::DockerResponseServerError { status_code: 409, .. } => EngineError::Conflict,
        // A container whose removal is under way has lost its filesystem before its name: what
        // was in it is gone, as it will be.
        bollard::errors::Error::DockerResponseServerError { message, .. }
            if message.contains("RWLayer of container") && message.contains("unexpectedly nil") =>
        {
            EngineError::NotFound
        }
        bollard::errors::Error::DockerResponseServerError { message, .. }
            if message.contains("address already in use") || message.contains("port is already allocated") =>
        {
            EngineError::PortTaken(message)
        }
        e @ (bollard::errors::Error::IOError { .. }
        | bollard::errors::Error::HyperLegacyError { .. }
        | bollard::errors::Error::RequestTimeoutError
        | bollard::errors::Error::SocketNotFoundError(_)) => EngineError::Unreachable(with_causes(&e)),
        other => EngineError::Other(with_causes(&other)),
    }
}

/// An error with the errors that caused it: the HTTP client's own says only "client error
/// (Connect)", its causes say why (the ssh client's message, a refused connection).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let line = c.to_string();
        if !text.contains(&line) {
            text = format!("{text}: {line}");
        }
        cause = c.source();
    }
    text
}

/// A container to create: what it runs and how it is published.
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub cmd: Vec<String>,
    pub labels: HashMap<String, String>,
    /// Named volume mounted at `/data`.
    pub volume: Option<String>,
    /// `(host address, port)` published to the same port inside the container.
    pub publish: Option<(String, u16)>,
    /// Restarted by the engine when it exits, unless stopped on purpose.
    pub restart: bool,
}

#[derive(Clone)]
pub struct Engine {
    /// As the user wrote it, for messages.
    pub url: String,
    /// The directory of the TLS client files, for a tcp:// engine that requires TLS.
    cert_path: Option<std::path::PathBuf>,
    /// Made on first use: an engine that is not there fails the calls that need it, not the
    /// provider's configuration.
    client: std::sync::Arc<std::sync::Mutex<Option<Docker>>>,
    /// Set when the engine last failed to answer: until then, calls fail at once instead of
    /// each waiting out its timeout (a refresh asks one engine about many nodes).
    silent_until: std::sync::Arc<std::sync::Mutex<Option<(tokio::time::Instant, String)>>>,
    /// For an `ssh://` engine, the calls that may be in flight at once.
    ssh_slots: Option<std::sync::Arc<tokio::sync::Semaphore>>,
}

impl Engine {
    /// The engine at `url` (`unix:///path`, `tcp://host:port`, over TLS with the client files
    /// in `cert_path`, or `ssh://user@host`); nothing is contacted yet.
    pub fn new(url: &str, cert_path: Option<&str>) -> Engine {
        Engine {
            url: url.to_string(),
            cert_path: cert_path.map(std::path::PathBuf::from),
            client: Default::default(),
            silent_until: Default::default(),
            ssh_slots: url
                .starts_with("ssh://")
                .then(|| std::sync::Arc::new(tokio::sync::Semaphore::new(ssh_transport::CALLS_AT_ONCE))),
        }
    }

    fn docker(&self) -> Result<Docker, EngineError> {
        let mut slot = self
            .client
            .lock()
            .map_err(|_| EngineError::Other("engine client lock poisoned".into()))?;
        if let Some(docker) = slot.as_ref() {
            return Ok(docker.clone());
        }
        let timeout = CALL_TIMEOUT.as_secs() + u64::try_from(STOP_GRACE_SECONDS).unwrap_or(30);
        let url = &self.url;
        let docker = if url.starts_with("unix://") {
            Docker::connect_with_unix(url, timeout, bollard::API_DEFAULT_VERSION)
        } else if let (Some(_), Some(dir)) = (url.strip_prefix("tcp://"), &self.cert_path) {
            let [key, cert, ca] = TLS_FILES.map(|f| dir.join(f));
            // bollard builds its TLS client from the process's default crypto provider, which
            // must be chosen when more than one is compiled in; ours is ring. Already chosen
            // is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Docker::connect_with_ssl(url, &key, &cert, &ca, timeout, bollard::API_DEFAULT_VERSION)
        } else if let Some(rest) = url.strip_prefix("tcp://") {
            Docker::connect_with_http(&format!("http://{rest}"), timeout, bollard::API_DEFAULT_VERSION)
        } else if url.starts_with("ssh://") {
            ssh_transport::connect(url, timeout)
        } else {
            return Err(EngineError::Other(format!("engine address {url:?} is not supported")));
        }
        .map_err(|e| EngineError::Other(format!("cannot reach engine {url}: {e}")))?;
        *slot = Some(docker.clone());
        Ok(docker)
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
        limit: Duration,
    ) -> Result<T, EngineError> {
        // Waiting for a slot is not the engine's time: the limit starts once the call is made.
        let _slot = match &self.ssh_slots {
            Some(slots) => Some(
                slots
                    .acquire()
                    .await
                    .map_err(|_| EngineError::Other("engine call slots closed".into()))?,
            ),
            None => None,
        };
        if let Ok(silent) = self.silent_until.lock()
            && let Some((until, why)) = silent.as_ref()
            && tokio::time::Instant::now() < *until
        {
            return Err(EngineError::Unreachable(format!(
                "{why} (not asked again for {SILENT_FOR:?})"
            )));
        }
        let (call_name, started) = (
            call_label(std::any::type_name_of_val(&call)),
            tokio::time::Instant::now(),
        );
        let outcome = match tokio::time::timeout(limit, call).await {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(EngineError::Unreachable(format!("no answer within {limit:?}"))),
        };
        tracing::debug!(engine = %self.url, call = call_name, elapsed_ms = started.elapsed().as_millis() as u64, "engine call");
        if let Ok(mut silent) = self.silent_until.lock() {
            *silent = match &outcome {
                Err(EngineError::Unreachable(why)) => Some((tokio::time::Instant::now() + SILENT_FOR, why.clone())),
                _ => None,
            };
        }
        outcome
    }

    /// The engine's error as a runtime error about `what`.
    pub fn error(&self, what: &str, e: EngineError) -> RuntimeError {
        match e {
            EngineError::Unreachable(detail) => RuntimeError::Unreachable {
                what: format!("the Docker engine {}", self.url),
                detail: format!("{what}: {detail}; check that the host is up and its engine runs"),
            },
            e => RuntimeError::Other(format!("{what} on engine {}: {e}", self.url)),
        }
    }

    pub async fn create(&self, spec: &ContainerSpec) -> Result<(), EngineError> {
        let port_bindings = spec.publish.as_ref().map(|(host, port)| {
            HashMap::from([(
                format!("{port}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some(host.clone()),
                    host_port: Some(port.to_string()),
                }]),
            )])
        });
        let exposed = spec
            .publish
            .as_ref()
            .map(|(_, port)| HashMap::from([(format!("{port}/tcp"), HashMap::new())]));
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(spec.cmd.clone()),
            labels: Some(spec.labels.clone()),
            user: Some("999:999".into()),
            exposed_ports: exposed,
            stop_timeout: Some(i64::from(STOP_GRACE_SECONDS)),
            host_config: Some(HostConfig {
                binds: spec.volume.as_ref().map(|v| vec![format!("{v}:/data")]),
                port_bindings,
                restart_policy: Some(RestartPolicy {
                    name: Some(if spec.restart {
                        RestartPolicyNameEnum::UNLESS_STOPPED
                    } else {
                        RestartPolicyNameEnum::NO
                    }),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(&spec.name).build();
        let docker = self.docker()?;
        self.bounded(docker.create_container(Some(options), body), CALL_TIMEOUT)
            .await
            .map(|_| ())
    }

    pub async fn start(&self, name: &str) -> Result<(), EngineError> {
        let docker = self.docker()?;
        self.bounded(
            docker.start_container(name, None::<bollard::query_parameters::StartContainerOptions>),
            CALL_TIMEOUT,
        )
        .await
    }

    /// Runs `cmd` in a new container of `image` named `name` until it exits (within `limit`),
    /// and returns what it printed; the container is removed either way.
    pub async fn output_of(
        &self,
        name: &str,
        image: &str,
        cmd: Vec<String>,
        limit: Duration,
    ) -> Result<String, EngineError> {
        let spec = ContainerSpec {
            name: name.to_string(),
            image: image.to_string(),
            cmd,
            labels: HashMap::new(),
            volume: None,
            publish: None,
            restart: false,
        };
        let ran = async {
            self.create(&spec).await?;
            self.start(name).await?;
            let deadline = tokio::time::Instant::now() + limit;
            while self.running(name).await? == Some(true) {
                if tokio::time::Instant::now() > deadline {
                    return Err(EngineError::Other(format!("{name} still ran after {limit:?}")));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            self.logs(name).await
        };
        let output = ran.await;
        let _ = self.remove(name).await;
        output
    }

    /// What a container printed since it was created, across its restarts.
    pub async fn logs(&self, name: &str) -> Result<String, EngineError> {
        let docker = self.docker()?;
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
        let logs = self
            .bounded(docker.logs(name, Some(options)).try_collect::<Vec<_>>(), CALL_TIMEOUT)
            .await?;
        Ok(logs
            .into_iter()
            .map(|l| String::from_utf8_lossy(&l.into_bytes()).into_owned())
            .collect())
    }

    /// Stops a container with SIGTERM (a node saves first), SIGKILL after the grace period.
    pub async fn stop(&self, name: &str) -> Result<(), EngineError> {
        let options = StopContainerOptionsBuilder::new().t(STOP_GRACE_SECONDS).build();
        let limit = CALL_TIMEOUT + Duration::from_secs(u64::try_from(STOP_GRACE_SECONDS).unwrap_or(30));
        let docker = self.docker()?;
        match self.bounded(docker.stop_container(name, Some(options)), limit).await {
            Err(EngineError::NotFound) => Ok(()),
            other => other,
        }
    }

    /// Removes a container (killing it if it runs) and its anonymous volumes; gone is fine.
    /// A removal already under way (one that was cancelled, say) is waited for.
    pub async fn remove(&self, name: &str) -> Result<(), EngineError> {
        let docker = self.docker()?;
        self.until_gone(|| {
            let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
            self.bounded(docker.remove_container(name, Some(options)), CALL_TIMEOUT)
        })
        .await
    }

    /// Removes a named volume; gone is fine, and one still held by a container being removed
    /// is waited for.
    pub async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        let docker = self.docker()?;
        self.until_gone(|| {
            let options = RemoveVolumeOptionsBuilder::new().force(true).build();
            self.bounded(docker.remove_volume(name, Some(options)), CALL_TIMEOUT)
        })
        .await
    }

    /// Repeats a removal while the engine says something else holds the object (409), for at
    /// most the call timeout.
    async fn until_gone<F, Fut>(&self, removal: F) -> Result<(), EngineError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), EngineError>>,
    {
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        loop {
            match removal().await {
                Ok(()) | Err(EngineError::NotFound) => return Ok(()),
                Err(EngineError::Conflict) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// What the engine says of a container; None when there is no such container.
    async fn inspect(&self, name: &str) -> Result<Option<bollard::models::ContainerInspectResponse>, EngineError> {
        let docker = self.docker()?;
        match self
            .bounded(
                docker.inspect_container(name, None::<bollard::query_parameters::InspectContainerOptions>),
                ASK_TIMEOUT,
            )
            .await
        {
            Ok(info) => Ok(Some(info)),
            Err(EngineError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the container runs; None when there is no such container.
    pub async fn running(&self, name: &str) -> Result<Option<bool>, EngineError> {
        Ok(self
            .inspect(name)
            .await?
            .map(|info| info.state.and_then(|s| s.running).unwrap_or(false)))
    }

    /// The id and labels of a container; None when there is no such container.
    pub async fn labels(&self, name: &str) -> Result<Option<(String, HashMap<String, String>)>, EngineError> {
        Ok(self.inspect(name).await?.map(|info| {
            (
                info.id.unwrap_or_default(),
                info.config.and_then(|c| c.labels).unwrap_or_default(),
            )
        }))
    }

    /// Names and labels of the containers whose name starts with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, HashMap<String, String>)>, EngineError> {
        let filters = HashMap::from([("name", vec![format!("^/{prefix}")])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let docker = self.docker()?;
        let found = self
            .bounded(docker.list_containers(Some(options)), CALL_TIMEOUT)
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.first()?.trim_start_matches('/').to_string();
                name.starts_with(prefix).then(|| (name, c.labels.unwrap_or_default()))
            })
            .collect())
    }

    /// Writes `contents` as `/data/<file>` of a container (running or not), mode 0600, owned
    /// by the container's user: secrets travel in the archive, never in the engine's metadata.
    pub async fn write_file(&self, container: &str, file: &str, contents: &[u8]) -> Result<(), EngineError> {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o600);
        header.set_uid(999);
        header.set_gid(999);
        header.set_mtime(0);
        let mut archive = tar::Builder::new(Vec::new());
        archive
            .append_data(&mut header, file, contents)
            .map_err(|e| EngineError::Other(e.to_string()))?;
        let tar = archive.into_inner().map_err(|e| EngineError::Other(e.to_string()))?;
        let options = UploadToContainerOptionsBuilder::new().path("/data").build();
        let docker = self.docker()?;
        self.bounded(
            docker.upload_to_container(container, Some(options), bollard::body_full(tar.into())),
            CALL_TIMEOUT,
        )
        .await
    }

    /// `/data/<file>` of a container; None when the container or the file does not exist.
    pub async fn read_file(&self, container: &str, file: &str) -> Result<Option<Vec<u8>>, EngineError> {
        let options = DownloadFromContainerOptionsBuilder::new()
            .path(&format!("/data/{file}"))
            .build();
        let docker = self.docker()?;
        let download = docker.download_from_container(container, Some(options)).try_fold(
            Vec::new(),
            |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            },
        );
        let tar = match self.bounded(download, CALL_TIMEOUT).await {
            Ok(tar) => tar,
            Err(EngineError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut entries = archive.entries().map_err(|e| EngineError::Other(e.to_string()))?;
        let Some(entry) = entries.next() else { return Ok(None) };
        let mut entry = entry.map_err(|e| EngineError::Other(e.to_string()))?;
        let mut contents = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut contents).map_err(|e| EngineError::Other(e.to_string()))?;
        Ok(Some(contents))
    }
}

#[cfg(test)]
mod tests {
    use super::{call_label, with_causes};

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn an_error_says_what_caused_it_without_saying_anything_twice() {
        let e = Layer(
            "client error (Connect)",
            Some(Box::new(Layer(
                "ssh: kex_exchange_identification: Connection closed by remote host",
                Some(Box::new(Layer("Connection closed by remote host", None))),
            ))),
        );
        assert_eq!(
            with_causes(&e),
            "client error (Connect): ssh: kex_exchange_identification: Connection closed by remote host"
        );
    }

    #[test]
    fn calls_are_logged_by_their_function_name() {
        assert_eq!(
            call_label("bollard::docker::Docker::create_container::{{closure}}<String>"),
            "create_container"
        );
        assert_eq!(
            call_label(
                "futures_util::TryFold<..., terraform_provider_valkey::runtime::docker::engine::Engine::read_file::{{closure}}>"
            ),
            "read_file"
        );
        assert_eq!(call_label("something"), "something");
    }
}
