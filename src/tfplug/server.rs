//! Runs a provider as a go-plugin gRPC server: handshake, listener, AutoMTLS, services,
//! graceful shutdown. SIGINT is ignored: on Ctrl-C Terraform sends StopProvider and then
//! GRPCController.Shutdown, and the provider must live to answer them.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use super::grpc::GrpcProvider;
use super::handshake::{self, HandshakeError};
use super::proto::{health, plugin, tfplugin6};
use super::provider::Provider;
use super::side_services::{Broker, Controller, Health, Stdio};
use super::tls::{self, TlsSetupError};

/// Terraform state and plans can be large; go-plugin's clients allow 256 MiB messages.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// How long in-flight calls may run on after GRPCController.Shutdown.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("could not listen on 127.0.0.1 (ports {0}): {1}")]
    Listen(String, std::io::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("could not write the handshake line: {0}")]
    Stdout(std::io::Error),
}

/// A connection from Terraform, with or without TLS.
enum Connection {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Connected for Connection {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_flush(cx),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

async fn listen(port_range: Option<(u16, u16)>) -> Result<TcpListener, ServeError> {
    let (min, max) = port_range.unwrap_or((0, 0));
    let mut last_error = None;
    for port in min..=max {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return Ok(l),
            Err(e) => last_error = Some(e),
        }
    }
    Err(ServeError::Listen(
        format!("{min}-{max}"),
        last_error.unwrap_or_else(|| std::io::Error::other("empty port range")),
    ))
}

fn ignore_sigint() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: installing SIG_IGN runs no handler code, so it cannot break async-signal safety.
    let _ = unsafe { signal(Signal::SIGINT, SigHandler::SigIgn) };
}

/// Serves `provider` until Terraform shuts the plugin down.
pub async fn serve<P: Provider>(provider: P) -> Result<(), ServeError> {
    let config = handshake::read_environment(|k| std::env::var(k).ok())?;
    ignore_sigint();
    let listener = listen(config.port_range).await?;
    let address = listener
        .local_addr()
        .map_err(|e| ServeError::Listen("local address".into(), e))?;
    let tls = config.client_cert_pem.as_deref().map(tls::auto_mtls).transpose()?;
    let line = handshake::handshake_line(address, tls.as_ref().map(|t| t.server_cert_der.as_slice()));
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")
            .and_then(|_| stdout.flush())
            .map_err(ServeError::Stdout)?;
    }
    tracing::debug!(%address, tls = tls.is_some(), "plugin server listening");

    let shutdown = CancellationToken::new();
    let (connections, incoming) = tokio::sync::mpsc::channel::<std::io::Result<Connection>>(16);
    let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.config));
    let accept_shutdown = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
                },
                _ = accept_shutdown.cancelled() => break,
            };
            let _ = tcp.set_nodelay(true);
            let connections = connections.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let connection = match acceptor {
                    None => Connection::Plain(tcp),
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(tls) => Connection::Tls(Box::new(tls)),
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "TLS handshake refused");
                            return;
                        }
                    },
                };
                let _ = connections.send(Ok(connection)).await;
            });
        }
    });

    let provider_service = tfplugin6::provider_server::ProviderServer::new(GrpcProvider::new(Arc::new(provider)))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let server = tonic::transport::Server::builder()
        .add_service(provider_service)
        .add_service(plugin::grpc_controller_server::GrpcControllerServer::new(Controller {
            shutdown: shutdown.clone(),
        }))
        .add_service(plugin::grpc_stdio_server::GrpcStdioServer::new(Stdio {
            shutdown: shutdown.clone(),
        }))
        .add_service(plugin::grpc_broker_server::GrpcBrokerServer::new(Broker {
            shutdown: shutdown.clone(),
        }))
        .add_service(health::health_server::HealthServer::new(Health))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::ReceiverStream::new(incoming),
            shutdown.clone().cancelled_owned(),
        );
    // Graceful shutdown waits for clients to hang up; a client that keeps its connection open
    // after asking for shutdown gets a short grace period, not a process that never exits.
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => served?,
        _ = grace => tracing::debug!("clients still connected after shutdown; exiting anyway"),
    }
    tracing::debug!("plugin server stopped");
    Ok(())
}
