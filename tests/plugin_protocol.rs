//! The provider binary as go-plugin sees it: handshake, services, stop and shutdown.
//! Talks plain gRPC (no AutoMTLS); the acceptance tests cover TLS through real Terraform.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use terraform_provider_valkey::tfplug::handshake::{MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE};
use terraform_provider_valkey::tfplug::proto::{health, plugin, tfplugin6};

const BINARY: &str = env!("CARGO_BIN_EXE_terraform-provider-valkey");

struct Plugin {
    child: Child,
    address: String,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_plugin(extra_env: &[(&str, &str)]) -> Plugin {
    let mut cmd = Command::new(BINARY);
    cmd.env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
        .env_remove("PLUGIN_CLIENT_CERT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start provider");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let parts: Vec<&str> = line.trim().split('|').collect();
    assert_eq!(parts[..3], ["1", "6", "tcp"], "handshake line {line:?}");
    assert_eq!(parts[4], "grpc");
    Plugin {
        child,
        address: format!("http://{}", parts[3]),
    }
}

fn exited_within(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn run_by_hand_it_explains_itself_and_exits_1() {
    let out = Command::new(BINARY).env_remove(MAGIC_COOKIE_KEY).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing may reach stdout before a handshake");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("Terraform provider plugin") && text.contains("terraform init"),
        "{text}"
    );
    assert!(!text.contains("panicked") && !text.contains("backtrace"));
}

#[test]
fn refuses_a_client_that_does_not_speak_protocol_6() {
    let out = Command::new(BINARY)
        .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("protocol 6"));
}

#[test]
fn listens_inside_the_port_range_it_is_given() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let range = port.to_string();
    let plugin = start_plugin(&[("PLUGIN_MIN_PORT", &range), ("PLUGIN_MAX_PORT", &range)]);
    assert!(plugin.address.ends_with(&format!(":{port}")), "{}", plugin.address);
}

#[tokio::test]
async fn stop_cancels_but_keeps_serving_sigint_is_ignored_and_shutdown_exits() {
    let mut plugin = start_plugin(&[]);
    let channel = tonic::transport::Endpoint::from_shared(plugin.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut provider =
        tfplugin6::provider_client::ProviderClient::new(channel.clone()).max_decoding_message_size(256 << 20);

    let schema = provider
        .get_provider_schema(tfplugin6::get_provider_schema::Request {})
        .await
        .unwrap()
        .into_inner();
    assert!(schema.resource_schemas.contains_key("valkey_service"));
    assert!(schema.server_capabilities.unwrap().plan_destroy);

    let mut health = health::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(health::HealthCheckRequest {
            service: "plugin".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        health::health_check_response::ServingStatus::Serving as i32
    );

    provider
        .stop_provider(tfplugin6::stop_provider::Request {})
        .await
        .unwrap();
    let again = provider
        .get_provider_schema(tfplugin6::get_provider_schema::Request {})
        .await;
    assert!(again.is_ok(), "the server must keep serving after StopProvider");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(plugin.child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert!(
        !exited_within(&mut plugin.child, Duration::from_millis(300)),
        "SIGINT must not kill the provider"
    );

    let mut controller = plugin::grpc_controller_client::GrpcControllerClient::new(channel);
    controller.shutdown(plugin::Empty {}).await.unwrap();
    assert!(
        exited_within(&mut plugin.child, Duration::from_secs(5)),
        "Shutdown must end the process"
    );
    assert!(plugin.child.try_wait().unwrap().unwrap().success());
}

#[test]
fn logs_are_hclog_json_lines_on_stderr_at_the_tf_log_level() {
    let mut child = Command::new(BINARY)
        .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("TF_LOG", "DEBUG")
        .env_remove("TF_LOG_PROVIDER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let entry: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(entry["@level"], "debug");
    assert!(entry["@message"].as_str().unwrap().contains("listening"));
    assert!(entry["@timestamp"].is_string());
}

#[tokio::test]
async fn undecodable_values_become_diagnostics_not_crashes() {
    let plugin = start_plugin(&[]);
    let channel = tonic::transport::Endpoint::from_shared(plugin.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut provider = tfplugin6::provider_client::ProviderClient::new(channel);
    let response = provider
        .validate_resource_config(tfplugin6::validate_resource_config::Request {
            type_name: "valkey_service".into(),
            config: Some(tfplugin6::DynamicValue {
                msgpack: vec![0xc1, 0xff, 0x00],
                json: vec![],
            }),
            client_capabilities: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.diagnostics.len(), 1);
    assert!(response.diagnostics[0].summary.contains("Invalid value"));
    let unknown = provider
        .validate_resource_config(tfplugin6::validate_resource_config::Request {
            type_name: "valkey_cluster".into(),
            config: None,
            client_capabilities: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(unknown.diagnostics[0].summary.contains("valkey_cluster"));
}
