//! `make release` (scripts/release.sh) produces what a provider registry or network mirror
//! serves, and Terraform installs the provider from it as it would from any mirror: an
//! ordinary source address, a network mirror served over HTTPS from loopback, `terraform
//! init`, and a lock file that records the archive's hashes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const SOURCE: &str = "registry.terraform.io/valkey-provider/valkey";

fn run(command: &mut Command) -> String {
    let out = command.output().expect("run");
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

struct Mirror(Child);

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves `root` over HTTPS on loopback with a certificate for 127.0.0.1; returns its port.
fn serve(root: &Path, dir: &Path) -> (Mirror, u16) {
    let (cert, key) = (dir.join("mirror-cert.pem"), dir.join("mirror-key.pem"));
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    let mut child = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/https_mirror.py"))
        .arg("--root")
        .arg(root)
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Mirror(child), line.trim().parse().expect("the mirror prints its port"))
}

#[test]
fn terraform_installs_the_release_from_a_network_mirror_and_locks_its_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    run(Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/release.sh"))
        .env("BINARY", env!("CARGO_BIN_EXE_terraform-provider-valkey"))
        .env("DIST", &dist)
        .env("SOURCE", SOURCE));

    // The files a registry serves, named as Terraform expects.
    let prefix = format!("terraform-provider-valkey_{VERSION}");
    let zip = format!("{prefix}_linux_amd64.zip");
    let listed = run(Command::new("unzip").arg("-Z1").arg(dist.join(&zip)));
    assert_eq!(listed.trim(), format!("terraform-provider-valkey_v{VERSION}"));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dist.join(format!("{prefix}_manifest.json"))).unwrap()).unwrap();
    assert_eq!(manifest["metadata"]["protocol_versions"], serde_json::json!(["6.0"]));
    let sums = std::fs::read_to_string(dist.join(format!("{prefix}_SHA256SUMS"))).unwrap();
    assert!(
        sums.contains(&format!("  {zip}\n")) && sums.contains(&format!("  {prefix}_manifest.json\n")),
        "{sums}"
    );
    run(Command::new("sha256sum")
        .args(["-c", &format!("{prefix}_SHA256SUMS")])
        .current_dir(&dist));

    // The signature verifies with the published key alone, in a keyring that has nothing else.
    let keyring = dir.path().join("verify-gnupg");
    std::fs::create_dir(&keyring).unwrap();
    std::fs::set_permissions(&keyring, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = || {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", &keyring).arg("--batch");
        c
    };
    run(gpg()
        .arg("--import")
        .arg(dist.join(format!("{prefix}_signing-key.asc"))));
    let verified = run(gpg()
        .arg("--verify")
        .arg(dist.join(format!("{prefix}_SHA256SUMS.sig")))
        .arg(dist.join(format!("{prefix}_SHA256SUMS"))));
    assert!(verified.contains("Good signature"), "{verified}");
    std::fs::write(dist.join(format!("{prefix}_SHA256SUMS")), sums.replace("  ", " *")).unwrap();
    let tampered = gpg()
        .arg("--verify")
        .arg(dist.join(format!("{prefix}_SHA256SUMS.sig")))
        .arg(dist.join(format!("{prefix}_SHA256SUMS")))
        .output()
        .unwrap();
    assert!(!tampered.status.success(), "a changed SHA256SUMS must not verify");
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", &keyring)
        .args(["--kill", "gpg-agent"])
        .status();
    own_key_signs(dir.path());

    // Terraform installs it from the mirror, over HTTPS, with an ordinary source address.
    let (_mirror, port) = serve(&dist.join("mirror"), dir.path());
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(
        dir.path().join("cli.tfrc"),
        format!("provider_installation {{\n  network_mirror {{\n    url = \"https://127.0.0.1:{port}/\"\n  }}\n}}\n"),
    )
    .unwrap();
    std::fs::write(
        work.join("main.tf"),
        format!(
            "terraform {{\n  required_providers {{\n    valkey = {{\n      source  = \"{SOURCE}\"\n      version = \"{VERSION}\"\n    }}\n  }}\n}}\n\nresource \"valkey_service\" \"main\" {{\n  name   = \"release-check\"\n  plan   = \"hobbyist\"\n  region = \"local-1\"\n}}\n"
        ),
    )
    .unwrap();
    let terraform = |args: &[&str]| {
        let mut c = Command::new("/usr/local/bin/terraform");
        c.args(args)
            .current_dir(&work)
            .env("TF_CLI_CONFIG_FILE", dir.path().join("cli.tfrc"))
            .env("SSL_CERT_FILE", dir.path().join("mirror-cert.pem"))
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1");
        c
    };
    let init = run(&mut terraform(&["init", "-input=false", "-no-color"]));
    // Terraform names registry.terraform.io sources without their host.
    let short = SOURCE.trim_start_matches("registry.terraform.io/");
    assert!(
        init.contains(&format!("Installed {short} v{VERSION} (verified checksum)")),
        "{init}"
    );
    // The lock file records the package's h1: hash (Go's dirhash of the zip's contents),
    // computed here on its own from the binary; the mirror's zh: hash was checked at download
    // ("verified checksum"), and a lock from a network mirror keeps only what it verified.
    let lock = std::fs::read_to_string(work.join(".terraform.lock.hcl")).unwrap();
    assert!(lock.contains(&format!("provider \"{SOURCE}\"")), "{lock}");
    assert!(lock.contains(&format!("version     = \"{VERSION}\"")), "{lock}");
    assert!(
        lock.contains(&format!("\"{}\"", h1_of_binary())),
        "the lock file records the package's h1: hash:\n{lock}"
    );
    // The installed provider serves Terraform: its schema validates the configuration.
    let validated = run(&mut terraform(&["validate", "-no-color"]));
    assert!(validated.contains("The configuration is valid"), "{validated}");

    // A mirror that serves another archive than the one its hashes name is refused.
    let mirrored = dist.join("mirror").join(SOURCE).join(&zip);
    std::fs::write(&mirrored, b"not the release").unwrap();
    std::fs::remove_dir_all(work.join(".terraform")).unwrap();
    std::fs::remove_file(work.join(".terraform.lock.hcl")).unwrap();
    let refused = terraform(&["init", "-input=false", "-no-color"]).output().unwrap();
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a tampered archive must not install");
    assert!(flatten(&text).contains("checksum"), "{text}");
}

/// With GPG_KEY_ID, the release is signed with that key from the caller's keyring, not with
/// one it generates, and the key it publishes is that one.
fn own_key_signs(dir: &Path) {
    let keyring = dir.join("own-gnupg");
    std::fs::create_dir(&keyring).unwrap();
    std::fs::set_permissions(&keyring, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = || {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", &keyring).arg("--batch");
        c
    };
    run(gpg().args([
        "--passphrase",
        "",
        "--quick-generate-key",
        "Release Team <release@example.invalid>",
        "ed25519",
        "sign",
        "1d",
    ]));
    let listed = run(gpg().args(["--with-colons", "--list-secret-keys"]));
    let fingerprint = listed
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .unwrap()
        .trim_matches(':')
        .to_string();
    let dist = dir.join("dist-own-key");
    run(Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/release.sh"))
        .env("BINARY", env!("CARGO_BIN_EXE_terraform-provider-valkey"))
        .env("DIST", &dist)
        .env("GNUPGHOME", &keyring)
        .env("GPG_KEY_ID", &fingerprint));
    assert!(!dist.join("gnupg").exists(), "no key is generated when one is given");
    let prefix = format!("terraform-provider-valkey_{VERSION}");
    let verified = run(gpg()
        .arg("--verify")
        .arg(dist.join(format!("{prefix}_SHA256SUMS.sig")))
        .arg(dist.join(format!("{prefix}_SHA256SUMS"))));
    assert!(verified.contains("Release Team"), "{verified}");
    let published = run(gpg()
        .arg("--show-keys")
        .arg("--with-colons")
        .arg(dist.join(format!("{prefix}_signing-key.asc"))));
    assert!(published.contains(&fingerprint), "{published}");
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", &keyring)
        .args(["--kill", "gpg-agent"])
        .status();
}

/// Go's dirhash "h1:" of a zip holding only the provider binary, as Terraform computes it: the
/// SHA-256 of the lines `HEX(SHA-256(file))  NAME\n`, in base64.
fn h1_of_binary() -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let binary = std::fs::read(env!("CARGO_BIN_EXE_terraform-provider-valkey")).unwrap();
    let file_hash: String = Sha256::digest(&binary).iter().map(|b| format!("{b:02x}")).collect();
    let summary = format!("{file_hash}  terraform-provider-valkey_v{VERSION}\n");
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(summary.as_bytes()))
    )
}

fn flatten(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
