//! Every argument of the provider and both resources, given values of the wrong type, empty,
//! overlong, unicode, path-traversing, out of range or unknown, through real Terraform: each
//! plan fails with an error naming the attribute, never a crash, never a secret, and nothing
//! is made in data_dir.

mod support;

use std::collections::BTreeMap;

use support::{Terraform, flatten};
use terraform_provider_valkey::catalog;
use terraform_provider_valkey::provider::ProviderModel;
use terraform_provider_valkey::resources::read_replica_model::ReadReplicaModel;
use terraform_provider_valkey::resources::service_model::ServiceModel;
use terraform_provider_valkey::tfplug::schema::Block;
use terraform_provider_valkey::tfplug::schema_derive::schema_for;

/// A password placed in bad URIs: it must never be echoed back.
const SECRET: &str = "pw-must-not-leak-7Q2";

/// The output without the configuration lines Terraform quotes under an error ("  12:   x =
/// ..."): those show the user's own file, secrets written in it as literals included, as
/// Terraform does for every provider. A secret passed through a sensitive variable is quoted as
/// the variable's name.
fn outside_source_lines(text: &str) -> String {
    text.lines()
        .filter(|line| {
            let t = line.trim_start();
            let digits = t.chars().take_while(char::is_ascii_digit).count();
            !(digits > 0 && t[digits..].starts_with(':'))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What an argument holds, which decides the bad values it gets.
#[derive(Clone, Copy)]
enum Kind {
    /// A name or a choice from a list (plan, region, policy, ...).
    Word,
    Duration,
    Int((i64, i64)),
    Bool,
    /// Keyspace event flags, where "" is valid.
    Flags,
    /// A map of strings (tags).
    Map,
}

/// HCL for a string literal. HCL's escapes match JSON's except for template sequences.
fn hcl(s: &str) -> String {
    serde_json::to_string(s)
        .unwrap()
        .replace("${", "$${")
        .replace("%{", "%%{")
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| hcl(v)).collect()
}

/// Bad values for each kind, as HCL expressions.
fn bad_values(kind: Kind) -> Vec<String> {
    let wrong_types = ["[\"x\"]".to_string(), "{ a = 1 }".to_string()];
    match kind {
        Kind::Word => {
            let mut v = strings(&[
                "",
                " ",
                &"a".repeat(64),
                &"a".repeat(70_000),
                "ünïcødé",
                "服务",
                "🦀",
                "ﬁle",
                "../../etc",
                "/etc/passwd",
                "a/b",
                "..",
                ".",
                "a\nb",
                "a\u{0}b",
                "UPPER",
                "-lead",
                "trail-",
                " padded ",
                "a;rm -rf /",
                "$(id)",
            ]);
            v.extend(wrong_types);
            v
        }
        Kind::Duration => {
            let mut v = strings(&[
                "",
                "soon",
                "-5m",
                "5",
                "５m",
                "1e9h",
                "99999999999999999999h",
                "2562048h",
                &"1h".repeat(20_000),
                "🦀",
                "m5",
            ]);
            v.extend(wrong_types);
            v
        }
        Kind::Int((min, max)) => {
            let mut v: Vec<String> = [
                (min - 1).to_string(),
                (max + 1).to_string(),
                "1.5".into(),
                "1e300".into(),
                "-1e300".into(),
                "99999999999999999999999".into(),
                hcl("many"),
                hcl(""),
            ]
            .into();
            v.extend(wrong_types);
            v
        }
        Kind::Bool => vec![hcl("maybe"), hcl(""), "[true]".into(), "{}".into()],
        Kind::Flags => {
            let mut v = strings(&[" ", "Z", "g$", "Ex Ex", "ünï", "E\nx", "$(id)"]);
            v.extend(wrong_types);
            v
        }
        Kind::Map => vec![
            hcl("team"),
            "true".into(),
            "[\"x\"]".into(),
            "{ a = [1] }".into(),
            "{ a = { b = 1 } }".into(),
        ],
    }
}

/// A resource as attribute path (`block.attr` for nested blocks) to HCL expression.
type Body = BTreeMap<&'static str, String>;

fn render(kind: &str, label: &str, body: &Body) -> String {
    let mut top = String::new();
    let mut blocks: BTreeMap<&str, String> = BTreeMap::new();
    for (path, value) in body {
        match path.split_once('.') {
            Some((block, attr)) => blocks
                .entry(block)
                .or_default()
                .push_str(&format!("    {attr} = {value}\n")),
            None => top.push_str(&format!("  {path} = {value}\n")),
        }
    }
    for (block, attrs) in blocks {
        top.push_str(&format!("  {block} {{\n{attrs}  }}\n"));
    }
    format!("resource \"{kind}\" \"{label}\" {{\n{top}}}\n")
}

fn user_config_and_timeouts(body: &mut Body) {
    body.insert("valkey_user_config.maxmemory_policy", hcl("noeviction"));
    body.insert("valkey_user_config.timeout", "300".into());
    body.insert("valkey_user_config.persistence", hcl("rdb"));
    body.insert("valkey_user_config.io_threads", "1".into());
    body.insert("valkey_user_config.repl_timeout", "60".into());
    body.insert("valkey_user_config.notify_keyspace_events", hcl("Ex"));
    body.insert("valkey_user_config.number_of_databases", "16".into());
    body.insert("valkey_user_config.lfu_log_factor", "10".into());
    body.insert("valkey_user_config.lfu_decay_time", "1".into());
    body.insert("valkey_user_config.active_expire_effort", "1".into());
    body.insert("valkey_user_config.activedefrag", "false".into());
    body.insert("valkey_user_config.pubsub_client_output_buffer_limit", "32".into());
    body.insert("valkey_user_config.acl_channels_default", hcl("resetchannels"));
    body.insert("valkey_user_config.repl_backlog_size", "64".into());
    body.insert("valkey_user_config.rdb_compression", "true".into());
    body.insert("tags", "{ team = \"payments\" }".into());
    for path in ["timeouts.create", "timeouts.update", "timeouts.delete"] {
        body.insert(path, hcl("5m"));
    }
}

fn service() -> Body {
    let mut body = Body::new();
    body.insert("name", hcl("bad-input-primary"));
    body.insert("plan", hcl("startup-4"));
    body.insert("cloud", hcl("local"));
    body.insert("region", hcl("local-1"));
    body.insert("termination_protection", "false".into());
    body.insert("powered", "true".into());
    body.insert("failover.enabled", "true".into());
    body.insert("failover.down_after_ms", "5000".into());
    body.insert("failover.min_replicas_to_write", "1".into());
    body.insert("failover.min_replicas_max_lag", "2".into());
    body.insert("tls.certificate_validity", hcl("8760h"));
    body.insert("tls.renew_before", hcl("720h"));
    body.insert("tls.auth_clients", hcl("yes"));
    let (ca_cert, ca_key) = users_ca();
    body.insert("tls.ca_certificate", hcl(&ca_cert));
    body.insert("tls.ca_private_key_wo", hcl(&ca_key));
    user_config_and_timeouts(&mut body);
    body
}

/// A CA of the user's, certificate and key (PEM), made once per test process.
fn users_ca() -> (String, String) {
    static CA: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    })
    .clone()
}

fn replica() -> Body {
    let mut body = Body::new();
    body.insert("name", hcl("bad-input-replica"));
    body.insert("primary_service", "valkey_service.primary.name".into());
    body.insert("plan", hcl("startup-4"));
    body.insert("cloud", hcl("local"));
    body.insert("region", hcl("local-2"));
    body.insert("failover_priority", "100".into());
    body.insert("promote", "false".into());
    body.insert("powered", "true".into());
    body.insert("termination_protection", "false".into());
    user_config_and_timeouts(&mut body);
    body
}

fn kind_of(path: &str) -> Kind {
    match path.rsplit('.').next().unwrap() {
        "termination_protection" | "powered" | "enabled" | "promote" | "activedefrag" | "rdb_compression" => Kind::Bool,
        "expected_write_kib_per_second" => Kind::Int(catalog::WRITE_RATE_KIB_RANGE),
        "longest_link_outage_seconds" => Kind::Int(catalog::LINK_OUTAGE_SECONDS_RANGE),
        "notify_keyspace_events" => Kind::Flags,
        "tags" => Kind::Map,
        "number_of_databases" => Kind::Int(catalog::DATABASES_RANGE),
        "lfu_log_factor" => Kind::Int(catalog::LFU_LOG_FACTOR_RANGE),
        "lfu_decay_time" => Kind::Int(catalog::LFU_DECAY_TIME_RANGE),
        "active_expire_effort" => Kind::Int(catalog::ACTIVE_EXPIRE_EFFORT_RANGE),
        "pubsub_client_output_buffer_limit" => Kind::Int(catalog::PUBSUB_BUFFER_LIMIT_MB_RANGE),
        // startup-4's nodes may keep up to a quarter of their 4 GiB.
        "repl_backlog_size" => Kind::Int((1, 1024)),
        "down_after_ms" => Kind::Int(catalog::DOWN_AFTER_MS_RANGE),
        "min_replicas_to_write" => Kind::Int(catalog::MIN_REPLICAS_TO_WRITE_RANGE),
        "min_replicas_max_lag" => Kind::Int(catalog::MIN_REPLICAS_MAX_LAG_RANGE),
        "failover_priority" => Kind::Int(catalog::FAILOVER_PRIORITY_RANGE),
        "timeout" => Kind::Int(catalog::CLIENT_TIMEOUT_RANGE),
        "io_threads" => Kind::Int(catalog::IO_THREADS_RANGE),
        "repl_timeout" => Kind::Int(catalog::REPL_TIMEOUT_RANGE),
        "create" | "update" | "delete" | "certificate_validity" | "renew_before" => Kind::Duration,
        _ => Kind::Word,
    }
}

/// Every argument a user can set in `block`, as `attr` or `block.attr`.
fn arguments(block: &Block) -> Vec<String> {
    let settable = |b: &Block| -> Vec<String> {
        b.attributes
            .iter()
            .filter(|a| a.required || a.optional)
            .map(|a| a.name.clone())
            .collect()
    };
    let mut all = settable(block);
    for nested in &block.blocks {
        all.extend(
            settable(&nested.block)
                .into_iter()
                .map(|a| format!("{}.{a}", nested.type_name)),
        );
    }
    all.sort();
    all
}

/// The backlog's declared write rate and outage: they take the place of repl_backlog_size (the
/// two together are refused), so they are tried on a body that declares them instead.
const DECLARED_BACKLOG: [&str; 2] = [
    "valkey_user_config.expected_write_kib_per_second",
    "valkey_user_config.longest_link_outage_seconds",
];

fn with_declared_backlog(body: &Body) -> Body {
    let mut body = body.clone();
    body.remove("valkey_user_config.repl_backlog_size");
    body.insert(DECLARED_BACKLOG[0], "1024".into());
    body.insert(DECLARED_BACKLOG[1], "60".into());
    body
}

#[test]
fn the_matrix_covers_every_argument() {
    let covered = |body: Body, extra: &[&str]| {
        let mut paths: Vec<String> = body.keys().chain(extra).map(|p| p.to_string()).collect();
        paths.sort();
        paths
    };
    let service_schema = schema_for::<ServiceModel>(0).unwrap().block;
    assert_eq!(covered(service(), &DECLARED_BACKLOG), arguments(&service_schema));
    let replica_schema = schema_for::<ReadReplicaModel>(0).unwrap().block;
    let replica_extra = [&["primary_uri"][..], &DECLARED_BACKLOG[..]].concat();
    assert_eq!(covered(replica(), &replica_extra), arguments(&replica_schema));
    // The provider's arguments each have their own list of bad values below.
    let provider_schema = schema_for::<ProviderModel>(0).unwrap().block;
    assert_eq!(
        arguments(&provider_schema),
        ["data_dir", "docker.image", "regions", "valkey_server"]
    );
}

/// One working directory that plans configuration after configuration.
struct Bench {
    tf: Terraform,
    tried: usize,
    problems: Vec<String>,
}

impl Bench {
    fn new() -> Bench {
        let tf = Terraform::new("");
        Bench {
            tf,
            tried: 0,
            problems: Vec::new(),
        }
    }

    /// main.tf with the provider keeping its data in this bench's data_dir, then `body`.
    fn main_tf(&self, body: &str) -> String {
        // The TLS-capable binary, so a baseline with a tls block plans cleanly.
        let data_dir = hcl(&self.tf.data_dir().display().to_string());
        let binary = std::env::var("VALKEY_TLS_SERVER").expect("VALKEY_TLS_SERVER (CI builds it)");
        support::main_tf(
            &format!("  data_dir = {data_dir}\n  valkey_server = {}\n", hcl(&binary)),
            body,
        )
    }

    fn plan(&self, main_tf: &str) -> (bool, String) {
        std::fs::write(self.tf.work().join("main.tf"), main_tf).unwrap();
        let out = self.tf.run(&["plan", "-input=false", "-no-color"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Plans `main_tf`, which has one bad value for `attribute`, and records what is wrong
    /// with what the user sees.
    fn expect_rejected(&mut self, main_tf: &str, attribute: &str, value: &str) {
        self.tried += 1;
        let (ok, text) = self.plan(main_tf);
        let shown: String = value.chars().take(40).collect();
        let leaf = attribute.rsplit('.').next().unwrap();
        let made = std::fs::read_dir(self.tf.data_dir().join("services"))
            .map(|d| d.count())
            .unwrap_or(0);
        let crash = ["panic", "Plugin did not respond", "backtrace", "goroutine"]
            .into_iter()
            .find(|c| text.contains(c));
        let problem = if ok {
            Some("accepted".to_string())
        } else if let Some(crash) = crash {
            Some(format!("crashed ({crash})"))
        } else if !flatten(&text).contains(leaf) {
            Some(format!("the error does not name {leaf}"))
        } else if outside_source_lines(&text).contains(SECRET) {
            Some("the error shows the password".to_string())
        } else if made > 0 {
            Some("the plan made something in data_dir".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            let excerpt: String = match text.find("Error") {
                Some(at) => text[at..].chars().take(600).collect(),
                None => text.chars().take(600).collect(),
            };
            self.problems
                .push(format!("{attribute} = {shown}: {problem}\n{excerpt}"));
        }
    }

    /// Fails the test with every problem found, after all values were tried.
    fn finish(self, what: &str) {
        eprintln!("{what}: {} bad inputs tried", self.tried);
        assert!(
            self.problems.is_empty(),
            "{} of {} bad inputs to {what} were mishandled:\n\n{}",
            self.problems.len(),
            self.tried,
            self.problems.join("\n\n")
        );
    }
}

#[test]
fn every_service_argument_rejects_bad_values_at_plan() {
    let mut bench = Bench::new();
    let good = service();
    let (ok, text) = bench.plan(&bench.main_tf(&render("valkey_service", "primary", &good)));
    assert!(ok, "the baseline must plan cleanly:\n{text}");
    for (&path, _) in good.iter() {
        for value in bad_values(kind_of(path)) {
            let mut body = good.clone();
            body.insert(path, value.clone());
            let main_tf = bench.main_tf(&render("valkey_service", "primary", &body));
            bench.expect_rejected(&main_tf, path, &value);
        }
    }
    let declared = with_declared_backlog(&good);
    let (ok, text) = bench.plan(&bench.main_tf(&render("valkey_service", "primary", &declared)));
    assert!(ok, "a declared backlog must plan cleanly:\n{text}");
    for path in DECLARED_BACKLOG {
        for value in bad_values(kind_of(path)) {
            let mut body = declared.clone();
            body.insert(path, value.clone());
            let main_tf = bench.main_tf(&render("valkey_service", "primary", &body));
            bench.expect_rejected(&main_tf, path, &value);
        }
    }
    // A required argument left out.
    for path in ["name", "plan", "region"] {
        let mut body = good.clone();
        body.remove(path);
        let main_tf = bench.main_tf(&render("valkey_service", "primary", &body));
        bench.expect_rejected(&main_tf, path, "(missing)");
    }
    bench.finish("valkey_service");
}

#[test]
fn every_read_replica_argument_rejects_bad_values_at_plan() {
    let mut bench = Bench::new();
    let primary = render("valkey_service", "primary", &service());
    let good = replica();
    let with =
        |bench: &Bench, body: &Body| bench.main_tf(&format!("{primary}{}", render("valkey_read_replica", "far", body)));
    let (ok, text) = bench.plan(&with(&bench, &good));
    assert!(ok, "the baseline must plan cleanly:\n{text}");
    for (&path, _) in good.iter() {
        // primary_service's good value is a reference; its bad ones are literals.
        for value in bad_values(kind_of(path)) {
            let mut body = good.clone();
            body.insert(path, value.clone());
            bench.expect_rejected(&with(&bench, &body), path, &value);
        }
    }
    let declared = with_declared_backlog(&good);
    let (ok, text) = bench.plan(&with(&bench, &declared));
    assert!(ok, "a declared backlog must plan cleanly:\n{text}");
    for path in DECLARED_BACKLOG {
        for value in bad_values(kind_of(path)) {
            let mut body = declared.clone();
            body.insert(path, value.clone());
            bench.expect_rejected(&with(&bench, &body), path, &value);
        }
    }
    let uris = [
        String::new(),
        "not a uri".into(),
        format!("http://u:{SECRET}@127.0.0.1:6379"),
        format!("valkey://u:{SECRET}@127.0.0.1:0"),
        format!("valkey://u:{SECRET}@127.0.0.1:99999"),
        format!("valkey://u:{SECRET}@[::1"),
        format!("valkey://u:{SECRET}@ünï.invalid:6379"),
        format!("valkey://u:{SECRET}@../../etc:1"),
        format!("valkey://u:{SECRET}@127.0.0.1:1"),
        format!("valkey://u:{SECRET}@127.0.0.1:1/{}", "a".repeat(70_000)),
        format!("valkey://u:{SECRET}@127.0.0.1"),
        "valkey://127.0.0.1:1".into(),
    ];
    for uri in &uris {
        let mut body = good.clone();
        body.remove("primary_service");
        body.insert("primary_uri", hcl(uri));
        bench.expect_rejected(&with(&bench, &body), "primary_uri", uri);
    }
    for wrong_type in ["[\"x\"]", "{ a = 1 }"] {
        let mut body = good.clone();
        body.remove("primary_service");
        body.insert("primary_uri", wrong_type.into());
        bench.expect_rejected(&with(&bench, &body), "primary_uri", wrong_type);
    }
    // A URI from a sensitive variable: its password must not appear anywhere at all.
    for uri in [
        format!("valkey://u:{SECRET}@127.0.0.1:1"),
        format!("http://u:{SECRET}@x:1"),
    ] {
        let mut body = good.clone();
        body.remove("primary_service");
        body.insert("primary_uri", "var.primary_uri".into());
        let main_tf = format!(
            "{}\nvariable \"primary_uri\" {{\n  type      = string\n  sensitive = true\n  default   = {}\n}}\n",
            with(&bench, &body),
            hcl(&uri)
        );
        let (_, text) = bench.plan(&main_tf);
        assert!(
            !text.contains(SECRET),
            "the password of a sensitive primary_uri shows:\n{text}"
        );
        bench.expect_rejected(&main_tf, "primary_uri", &uri);
    }
    // Both sources, and neither.
    let mut both = good.clone();
    both.insert("primary_uri", hcl(&format!("valkey://u:{SECRET}@127.0.0.1:1")));
    bench.expect_rejected(&with(&bench, &both), "primary_uri", "(with primary_service)");
    let mut neither = good.clone();
    neither.remove("primary_service");
    bench.expect_rejected(&with(&bench, &neither), "primary_service", "(neither)");
    for path in ["name", "plan", "region"] {
        let mut body = good.clone();
        body.remove(path);
        bench.expect_rejected(&with(&bench, &body), path, "(missing)");
    }
    bench.finish("valkey_read_replica");
}

#[test]
fn every_provider_argument_rejects_bad_values_at_plan() {
    let mut bench = Bench::new();
    // Without its tls block, which needs the TLS-capable binary these provider blocks replace.
    let mut body = service();
    body.retain(|path, _| !path.starts_with("tls."));
    let resource = render("valkey_service", "primary", &body);
    let with_provider = |attributes: &str| support::main_tf(attributes, &resource);
    let data_dir = hcl(&bench.tf.data_dir().display().to_string());
    let (ok, text) = bench.plan(&with_provider(&format!("  data_dir = {data_dir}\n")));
    assert!(ok, "the baseline must plan cleanly:\n{text}");

    let blocked = bench.tf.dir.path().join("a-file");
    std::fs::write(&blocked, "not a directory").unwrap();
    let bad_dirs = [
        hcl(""),
        hcl("a\u{0}b"),
        hcl("/proc/no-such-dir/data"),
        hcl(&blocked.join("data").display().to_string()),
        hcl(&format!("/tmp/{}", "a".repeat(5000))),
        "[\"x\"]".into(),
        "{ a = 1 }".into(),
    ];
    for value in bad_dirs {
        bench.expect_rejected(&with_provider(&format!("  data_dir = {value}\n")), "data_dir", &value);
    }
    let bad_binaries = [
        hcl(""),
        hcl("/nonexistent/valkey-server"),
        hcl("/bin/true"),
        hcl("/etc"),
        hcl("/etc/passwd"),
        hcl("vålkey-sërver"),
        hcl("a\u{0}b"),
        hcl(&"a".repeat(5000)),
        "[\"x\"]".into(),
    ];
    for value in bad_binaries {
        let attributes = format!("  data_dir = {data_dir}\n  valkey_server = {value}\n");
        bench.expect_rejected(&with_provider(&attributes), "valkey_server", &value);
    }
    let bad_regions = [
        hcl("x"),
        "[\"x\"]".into(),
        "{ \"\" = \"127.0.9.1\" }".into(),
        "{ \"Bad/Name\" = \"127.0.9.1\" }".into(),
        "{ \"../up\" = \"127.0.9.1\" }".into(),
        "{ \"ü\" = \"127.0.9.1\" }".into(),
        "{ r9 = \"not-an-ip\" }".into(),
        "{ r9 = \"127.0.0.300\" }".into(),
        "{ r9 = \"\" }".into(),
        "{ r9 = \"127.0.9.1:80\" }".into(),
        "{ r9 = [\"x\"] }".into(),
        format!("{{ r9 = {} }}", hcl(&"1".repeat(5000))),
        // A built-in region keeps its address.
        "{ \"local-1\" = \"127.0.9.1\" }".into(),
    ];
    for value in bad_regions {
        let attributes = format!("  data_dir = {data_dir}\n  regions = {value}\n");
        bench.expect_rejected(&with_provider(&attributes), "regions", &value);
    }
    // The docker block: each case spoils one part of a block that plans cleanly.
    let docker = |image: &str, region: &str, url: &str, advertise: &str| {
        format!(
            "  data_dir = {data_dir}\n  docker {{\n    image = {image}\n    region {{\n      name  = {region}\n      \
             hosts = [{{ url = {url}, advertise_address = {advertise} }}]\n    }}\n  }}\n"
        )
    };
    let (image, region, url, advertise) = (
        hcl("valkey-test:local"),
        hcl("eu-west"),
        hcl("unix:///run/docker.sock"),
        hcl("10.0.0.1"),
    );
    let (ok, text) = bench.plan(&with_provider(&docker(&image, &region, &url, &advertise)));
    assert!(ok, "a good docker block must plan cleanly:\n{text}");
    for value in [hcl(""), hcl("two words"), "[\"x\"]".into()] {
        bench.expect_rejected(
            &with_provider(&docker(&value, &region, &url, &advertise)),
            "docker.image",
            &value,
        );
    }
    for value in [hcl(""), hcl("EU/West"), hcl("-x"), hcl(&"r".repeat(64))] {
        bench.expect_rejected(
            &with_provider(&docker(&image, &value, &url, &advertise)),
            "docker.region.name",
            &value,
        );
    }
    for value in [
        hcl(""),
        hcl("http://engine:2375"),
        hcl("ssh://"),
        hcl("ssh://ops@"),
        hcl("ssh://engine:ssh"),
        hcl("ssh://a:b@engine"),
        hcl("unix://relative.sock"),
        hcl("tcp://engine"),
        hcl("tcp://:2375"),
        hcl("tcp://engine:0"),
    ] {
        bench.expect_rejected(
            &with_provider(&docker(&image, &region, &value, &advertise)),
            "docker.region.hosts.url",
            &value,
        );
    }
    for value in [hcl(""), hcl("engine.example"), hcl("10.0.0.300"), hcl("10.0.0.1:80")] {
        bench.expect_rejected(
            &with_provider(&docker(&image, &region, &url, &value)),
            "docker.region.hosts.advertise_address",
            &value,
        );
    }
    let twice = format!(
        "  data_dir = {data_dir}\n  docker {{\n    image = {image}\n    region {{\n      name  = {region}\n      \
         hosts = [{{ url = {url}, advertise_address = {advertise} }}, {{ url = {url}, advertise_address = {advertise} }}]\n    \
         }}\n  }}\n"
    );
    bench.expect_rejected(&with_provider(&twice), "docker.region.hosts.advertise_address", "twice");
    let no_hosts = format!(
        "  data_dir = {data_dir}\n  docker {{\n    image = {image}\n    region {{\n      name  = {region}\n      \
         hosts = []\n    }}\n  }}\n"
    );
    bench.expect_rejected(&with_provider(&no_hosts), "docker.region.hosts", "[]");
    // TLS to tcp:// engines: a directory with the client's three files.
    let tls = tempfile::tempdir().unwrap();
    for file in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::write(tls.path().join(file), "").unwrap();
    }
    let with_tls = |url: &str, cert_path: &str| {
        format!(
            "  data_dir = {data_dir}\n  docker {{\n    image = {image}\n    region {{\n      name  = {region}\n      \
             hosts = [{{ url = {url}, advertise_address = {advertise} }}]\n      cert_path = {cert_path}\n    }}\n  }}\n"
        )
    };
    let (tcp, good_dir) = (hcl("tcp://10.0.0.1:2376"), hcl(&tls.path().display().to_string()));
    let (ok, text) = bench.plan(&with_provider(&with_tls(&tcp, &good_dir)));
    assert!(ok, "a tcp:// engine with a TLS directory must plan cleanly:\n{text}");
    bench.expect_rejected(
        &with_provider(&with_tls(&url, &good_dir)),
        "docker.region.cert_path",
        &good_dir,
    );
    for value in [
        hcl("/nonexistent/tls"),
        hcl(&tls.path().join("ca.pem").display().to_string()),
    ] {
        bench.expect_rejected(
            &with_provider(&with_tls(&tcp, &value)),
            "docker.region.cert_path",
            &value,
        );
    }
    bench.finish("the provider");
}
