#![allow(dead_code)]
//! The Docker Engines `scripts/docker-hosts.sh up 6` starts, as the docker cloud's tests see
//! them: hosts 1 to 3 in two regions, reached through their sockets, for most tests; hosts 4 to
//! 6, one region each, reached over TCP with TLS, for the test that cuts hosts off (its own, so
//! no other test loses a host). Missing engines fail a test (CI starts them); they never skip it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use terraform_provider_valkey::runtime::docker::{DockerHost, DockerRegion, DockerSettings};

pub const IMAGE: &str = "valkey-test:local";
/// Every test host the script starts.
pub const HOSTS: std::ops::RangeInclusive<usize> = 1..=6;
/// The client's TLS files for the engines' TCP listeners.
pub const CERT_PATH: &str = "/run/vk-docker-tls/client";

/// Host `i` (1-based): its engine's socket URL, network namespace and address.
pub fn host(i: usize) -> (String, String, String) {
    (
        format!("unix:///run/vk-docker-{i}.sock"),
        format!("vkhost{i}"),
        format!("10.77.0.{}", 10 + i),
    )
}

fn assert_running(i: usize) {
    let socket = format!("/run/vk-docker-{i}.sock");
    assert!(
        std::path::Path::new(&socket).exists(),
        "Docker engine {socket} is not running: start the test hosts with `scripts/docker-hosts.sh up 6` (as root)"
    );
}

/// Host `i`'s engine over TCP with TLS.
pub fn tls_url(i: usize) -> String {
    format!("tcp://{}:2376", host(i).2)
}

/// `east`, `west` and `south` on hosts 4, 5 and 6, one each, reached over TCP with TLS.
pub fn tls_settings() -> DockerSettings {
    let region = |name: &str, i: usize| {
        assert_running(i);
        DockerRegion {
            name: name.into(),
            hosts: vec![DockerHost {
                url: tls_url(i),
                advertise_address: host(i).2,
            }],
            cert_path: Some(CERT_PATH.into()),
        }
    };
    DockerSettings {
        image: IMAGE.into(),
        regions: vec![region("east", 4), region("west", 5), region("south", 6)],
    }
}

/// Host `i`'s engine over SSH (the script's sshd on the host, with its key).
pub fn ssh_url(i: usize) -> String {
    format!("ssh://root@{}", host(i).2)
}

/// `region-a` on hosts 1 and 2, `region-b` on host 3.
pub fn settings() -> DockerSettings {
    (1..=3).for_each(assert_running);
    let docker_host = |i| {
        let (url, _, advertise_address) = host(i);
        DockerHost { url, advertise_address }
    };
    DockerSettings {
        image: IMAGE.into(),
        regions: vec![
            DockerRegion {
                name: "region-a".into(),
                hosts: vec![docker_host(1), docker_host(2)],
                cert_path: None,
            },
            DockerRegion {
                name: "region-b".into(),
                hosts: vec![docker_host(3)],
                cert_path: None,
            },
        ],
    }
}

/// A listener on `address:port` inside the host whose address it is, until dropped.
pub struct Squatter(Child);

impl Squatter {
    pub fn on(address: &str, port: u16) -> Squatter {
        let namespace = HOSTS
            .map(host)
            .find(|(_, _, a)| a == address)
            .expect("a test host address")
            .1;
        let script =
            format!("import socket,time\ns=socket.socket()\ns.bind(('{address}',{port}))\ns.listen()\ntime.sleep(600)");
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{namespace}"))
            .args(["python3", "-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .expect("nsenter");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((address, port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the squatter on {address}:{port} never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Squatter(child)
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the docker CLI prints for `args` against the engine at `url` (empty when it fails).
pub fn docker_cli(url: &str, args: &[&str]) -> String {
    Command::new("docker")
        .args(["-H", url])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default()
}

/// Removes every container and volume whose name contains `marker`, on every test engine.
pub fn remove_everything_named(marker: &str) {
    let filter = format!("name={marker}");
    for i in HOSTS {
        let url = host(i).0;
        for (list, remove) in [
            (vec!["ps", "-aq", "--filter", &filter], vec!["rm", "-f", "-v"]),
            (
                vec!["volume", "ls", "-q", "--filter", &filter],
                vec!["volume", "rm", "-f"],
            ),
        ] {
            let found = docker_cli(&url, &list);
            let names: Vec<&str> = found.lines().collect();
            if !names.is_empty() {
                docker_cli(&url, &[remove, names].concat());
            }
        }
    }
}

/// The provider block's `docker` block for hosts 1 to 3, as HCL lines.
pub fn provider_block() -> String {
    provider_block_for(&settings())
}

/// The provider block's `docker` block for `settings`, as HCL lines.
pub fn provider_block_for(settings: &DockerSettings) -> String {
    let mut text = format!("  docker {{\n    image = \"{}\"\n", settings.image);
    for region in &settings.regions {
        let hosts: Vec<String> = region
            .hosts
            .iter()
            .map(|h| {
                format!(
                    "{{ url = \"{}\", advertise_address = \"{}\" }}",
                    h.url, h.advertise_address
                )
            })
            .collect();
        let cert_path = match &region.cert_path {
            Some(path) => format!("      cert_path = \"{path}\"\n"),
            None => String::new(),
        };
        text += &format!(
            "    region {{\n      name  = \"{}\"\n      hosts = [{}]\n{cert_path}    }}\n",
            region.name,
            hosts.join(", ")
        );
    }
    text + "  }\n"
}

/// Every container on the test engines whose name contains `marker`, with its engine URL.
pub fn containers_named(marker: &str) -> Vec<(String, String)> {
    let filter = format!("name={marker}");
    let mut found = Vec::new();
    for i in HOSTS {
        let url = host(i).0;
        let names = docker_cli(&url, &["ps", "-a", "--format", "{{.Names}}", "--filter", &filter]);
        found.extend(names.lines().map(|name| (url.clone(), name.to_string())));
    }
    found
}

/// `docker inspect` of a container, as JSON.
pub fn inspect(url: &str, name: &str) -> serde_json::Value {
    serde_json::from_str(&docker_cli(url, &["inspect", name])).expect("docker inspect prints JSON")
}

/// Every volume on the test engines whose name contains `marker`, with its engine URL.
pub fn volumes_named(marker: &str) -> Vec<(String, String)> {
    let filter = format!("name={marker}");
    let mut found = Vec::new();
    for i in HOSTS {
        let url = host(i).0;
        let names = docker_cli(&url, &["volume", "ls", "-q", "--filter", &filter]);
        found.extend(names.lines().map(|name| (url.clone(), name.to_string())));
    }
    found
}

/// A working directory whose provider uses hosts 1 to 3, with `body` as its resources.
pub fn workdir(body: &str) -> crate::support::Terraform {
    let tf = crate::support::Terraform::new("");
    tf.write_config_with_provider(&provider_block(), body);
    tf
}

/// Destroys everything and checks no container or volume the test named with `marker` is
/// left on any engine.
pub fn destroy_leaves_nothing(tf: &crate::support::Terraform, marker: &str) {
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert_eq!(containers_named(marker), Vec::<(String, String)>::new());
    assert_eq!(volumes_named(marker), Vec::<(String, String)>::new());
}

/// Removes what a test made on the engines when it ends, however it ends.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_everything_named(&self.0);
    }
}

/// A marker for the names one test gives its services: lowercase, unique per run.
pub fn marker() -> String {
    let n: u32 = rand::random_range(0..26u32.pow(5));
    let letters: String = (0..5)
        .map(|k| char::from(b'a' + ((n / 26u32.pow(k)) % 26) as u8))
        .collect();
    format!("d{letters}")
}
