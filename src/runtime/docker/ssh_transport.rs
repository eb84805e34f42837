//! How the docker runtime reaches an `ssh://` engine, as `docker -H ssh://` does: the `ssh`
//! client, with the user's configuration and keys, runs `docker system dial-stdio` on the
//! host, and each HTTP connection to the engine is one such command. Unlike bollard's own ssh
//! transport, which logs in anew for every connection, the connections to one engine share one
//! login (an ssh control master, started on first use and again if it has ended), and at most
//! [`SESSIONS`] of them are open at once. An sshd with its defaults refuses logins at random
//! past ten under way at once (`MaxStartups 10:30:100`), which a provider making a group's
//! containers in parallel reached on a busy machine, and sessions past ten on one login
//! (`MaxSessions 10`).

use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bollard::{API_DEFAULT_VERSION, BollardRequest, Docker};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssh::{ChildStdin, ChildStdout, ControlPersist, Session, SessionBuilder, Stdio};
use tokio::io::Join;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

/// Most Engine API calls in flight at once to one engine; the engine module waits for a slot
/// before it starts a call's clock.
pub const CALLS_AT_ONCE: usize = 4;
/// Most connections (sessions on the login) open at once: the calls in flight and as many
/// kept idle for the next ones, below sshd's default `MaxSessions 10`.
pub const SESSIONS: usize = 2 * CALLS_AT_ONCE;
/// How long the login stays once no connection uses it, so that a provider killed before it
/// could log out leaves no login behind for longer.
const LOGIN_IDLE_SECONDS: NonZeroUsize = NonZeroUsize::new(30).unwrap();

/// A Docker client for the engine at `url` (`ssh://[user@]host[:port]`); nothing is contacted
/// until the first call.
pub fn connect(url: &str, timeout_seconds: u64) -> Result<Docker, bollard::errors::Error> {
    let connector = DialStdio {
        login: Arc::new(Mutex::new(None)),
        sessions: Arc::new(Semaphore::new(SESSIONS)),
    };
    let client = Arc::new(
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(CALLS_AT_ONCE)
            .build(connector),
    );
    Docker::connect_with_custom_transport(
        move |request: BollardRequest| {
            let client = Arc::clone(&client);
            async move { client.request(request).await.map_err(bollard::errors::Error::from) }
        },
        Some(url),
        timeout_seconds,
        API_DEFAULT_VERSION,
    )
}

/// Makes connections to an engine: `docker system dial-stdio` over the engine's one login.
#[derive(Clone)]
struct DialStdio {
    login: Arc<Mutex<Option<Arc<Session>>>>,
    sessions: Arc<Semaphore>,
}

impl DialStdio {
    /// The login to `destination` (`user@host:port`), made now if there is none or it has ended.
    /// Held locked while logging in: connections wanted meanwhile wait for this login instead
    /// of each making their own.
    async fn login(&self, destination: &str) -> Result<Arc<Session>, openssh::Error> {
        let mut login = self.login.lock().await;
        if let Some(session) = login.as_ref()
            && session.check().await.is_ok()
        {
            return Ok(Arc::clone(session));
        }
        let mut builder = SessionBuilder::default();
        builder.control_persist(ControlPersist::IdleFor(LOGIN_IDLE_SECONDS));
        let (builder, destination) = builder.resolve(destination);
        let control = builder.launch_master(destination).await?;
        let session = Arc::new(Session::new_process_mux(control));
        *login = Some(Arc::clone(&session));
        Ok(session)
    }

    async fn dial(self, uri: hyper::Uri) -> Result<EngineConnection, openssh::Error> {
        let destination = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| openssh::Error::Connect(std::io::Error::other(format!("no host in {uri}"))))?;
        let slot = Arc::clone(&self.sessions)
            .acquire_owned()
            .await
            .map_err(|_| openssh::Error::Connect(std::io::Error::other("the engine's sessions were closed")))?;
        let session = self.login(&destination).await?;
        let mut child = session
            .arc_command("docker")
            .args(["system", "dial-stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .await?;
        let (Some(stdin), Some(stdout)) = (child.stdin().take(), child.stdout().take()) else {
            return Err(openssh::Error::Connect(std::io::Error::other(
                "docker system dial-stdio started without its pipes",
            )));
        };
        Ok(EngineConnection {
            io: TokioIo::new(tokio::io::join(stdout, stdin)),
            _command: child,
            _slot: slot,
        })
    }
}

impl tower_service::Service<hyper::Uri> for DialStdio {
    type Response = EngineConnection;
    type Error = openssh::Error;
    type Future = Pin<Box<dyn Future<Output = Result<EngineConnection, openssh::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        Box::pin(self.clone().dial(uri))
    }
}

/// One HTTP connection to the engine: the command's output and input, the command (which ends
/// when its input closes, as this is dropped) and its place among the engine's sessions.
struct EngineConnection {
    io: TokioIo<Join<ChildStdout, ChildStdin>>,
    _command: openssh::Child<Arc<Session>>,
    _slot: OwnedSemaphorePermit,
}

impl Connection for EngineConnection {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for EngineConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for EngineConnection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
