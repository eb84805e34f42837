//! The runtime contract: what every runtime must do, written against the `Runtime` boundary
//! and the registry's rules over its store, never against one runtime's files or processes.
//! Each runtime supplies a `Harness` and gets every test through `contract_tests!`; the local
//! runtime is the first. Nodes are real valkey-server processes (or containers): the tests
//! write through a client and read back what they wrote.

#[path = "support/docker.rs"]
mod docker_hosts;
mod support;

use std::sync::Arc;
use std::time::Duration;

use terraform_provider_valkey::registry::{self, RecordError};
use terraform_provider_valkey::runtime::docker::DockerRuntime;
use terraform_provider_valkey::runtime::local::{LocalRuntime, Regions};
use terraform_provider_valkey::runtime::{
    Endpoint, Lease, NodeId, NodeRecord, NodeSpec, NodeState, Runtime, RuntimeError, ServiceRecord, Upstream,
};
use terraform_provider_valkey::valkey::{NodeClient, NodeConfig, SentinelConfig};

/// What a runtime under test provides besides the boundary itself.
trait Harness: Send + Sync {
    fn runtime(&self) -> Arc<dyn Runtime>;
    /// A region nodes can be placed in.
    fn region(&self) -> &str;
    /// Keeps `at` taken by something that is not the node while the returned guard lives.
    fn occupy(&self, at: &Endpoint) -> Box<dyn std::any::Any>;
    /// A service name of this harness's own (runtimes whose store other tests share suffix it).
    fn name(&self, base: &str) -> String {
        base.to_string()
    }
}

struct Local {
    _dir: tempfile::TempDir,
    runtime: Arc<dyn Runtime>,
}

impl Local {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let runtime =
            LocalRuntime::new(dir.path().to_path_buf(), support::valkey_server(), Regions::default()).unwrap();
        Local {
            _dir: dir,
            runtime: Arc::new(runtime),
        }
    }
}

impl Harness for Local {
    fn runtime(&self) -> Arc<dyn Runtime> {
        self.runtime.clone()
    }

    fn region(&self) -> &str {
        "local-3"
    }

    fn occupy(&self, at: &Endpoint) -> Box<dyn std::any::Any> {
        Box::new(std::net::TcpListener::bind((at.host.as_str(), at.port)).unwrap())
    }
}

/// The docker runtime on the three test engines; everything it made is removed on drop.
struct Docker {
    runtime: Arc<dyn Runtime>,
    marker: String,
}

impl Docker {
    fn new() -> Self {
        let runtime = DockerRuntime::configure(&docker_hosts::settings()).unwrap();
        Docker {
            runtime: Arc::new(runtime),
            marker: docker_hosts::marker(),
        }
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        docker_hosts::remove_everything_named(&self.marker);
    }
}

impl Harness for Docker {
    fn runtime(&self) -> Arc<dyn Runtime> {
        self.runtime.clone()
    }

    fn region(&self) -> &str {
        "region-a"
    }

    fn occupy(&self, at: &Endpoint) -> Box<dyn std::any::Any> {
        Box::new(docker_hosts::Squatter::on(&at.host, at.port))
    }

    fn name(&self, base: &str) -> String {
        format!("{base}-{}", self.marker)
    }
}

const PASSWORD: &str = "contract-password";

/// A data node's spec with snapshots on, so a stop saves what was written.
fn spec() -> NodeSpec {
    let config = NodeConfig {
        password: PASSWORD.into(),
        replication_password: "contract-replication".into(),
        sentinel_auth_password: String::new(),
        maxmemory_bytes: 64 * 1024 * 1024,
        maxmemory_policy: "noeviction".into(),
        timeout_seconds: 0,
        persistence: "rdb".into(),
        io_threads: 1,
        repl_timeout_seconds: 60,
        upstream: None,
        replica_priority: None,
        tls_auth_clients: None,
        acl_users: Vec::new(),
        databases: 16,
        min_replicas_to_write: 0,
        min_replicas_max_lag: 2,
        extra_settings: Vec::new(),
    };
    NodeSpec {
        settings: config.render(),
        password: PASSWORD.into(),
        tls: None,
    }
}

async fn client(at: &Endpoint) -> NodeClient {
    NodeClient::connect(&at.host, at.port, PASSWORD, None, Duration::from_secs(5))
        .await
        .unwrap()
}

fn record(name: &str, upstream: Option<Upstream>) -> ServiceRecord {
    ServiceRecord {
        name: name.into(),
        plan: "startup-4".into(),
        cloud: "contract".into(),
        region: "r".into(),
        password: "p".into(),
        nodes: vec![NodeRecord {
            index: 0,
            host: "h".into(),
            port: 1,
            cert: None,
        }],
        upstream,
        ..Default::default()
    }
}

fn replica_of(name: &str, primary: &str) -> ServiceRecord {
    record(name, Some(Upstream::Service { name: primary.into() }))
}

const LEASE: Duration = Duration::from_secs(600);

/// A node is placed, started, written to, stopped, started again at the same endpoint with
/// its data, and removed; stopping or removing what is not running is no error.
async fn nodes_keep_their_data_across_a_restart_and_go_with_remove(h: &dyn Harness) {
    let runtime = h.runtime();
    let node = NodeId::data(&h.name("keeper"), 0);
    let at = runtime.place(&node, h.region()).await.unwrap();
    assert_eq!(runtime.state(&node).await, NodeState::Stopped);
    let started = runtime.start(&node, &at, &spec(), true).await.unwrap();
    assert_eq!(
        started, at,
        "a start where nothing else listens keeps the placed endpoint"
    );
    assert_eq!(runtime.state(&node).await, NodeState::Running);
    let _: String = client(&at).await.command(&["SET", "contract", "kept"]).await.unwrap();
    runtime.stop(&node).await.unwrap();
    assert_eq!(runtime.state(&node).await, NodeState::Stopped);
    assert!(
        NodeClient::connect(&at.host, at.port, PASSWORD, None, Duration::from_millis(500))
            .await
            .is_err()
    );
    runtime.stop(&node).await.unwrap();
    runtime.start(&node, &at, &spec(), true).await.unwrap();
    let value: Option<String> = client(&at).await.command(&["GET", "contract"]).await.unwrap();
    assert_eq!(value.as_deref(), Some("kept"));
    runtime.remove(&node).await.unwrap();
    assert_eq!(runtime.state(&node).await, NodeState::Stopped);
    runtime.remove(&node).await.unwrap();
    // A removed node starts over empty.
    runtime.start(&node, &at, &spec(), false).await.unwrap();
    let value: Option<String> = client(&at).await.command(&["GET", "contract"]).await.unwrap();
    assert_eq!(value, None);
    runtime.remove(&node).await.unwrap();
}

/// A node whose endpoint was taken while it was down: pinned, it fails and says so; not
/// pinned, it moves and the runtime says where.
async fn a_taken_endpoint_fails_a_pinned_start_and_moves_an_unpinned_one(h: &dyn Harness) {
    let runtime = h.runtime();
    let node = NodeId::data(&h.name("squatted"), 0);
    let at = runtime.place(&node, h.region()).await.unwrap();
    let _squatter = h.occupy(&at);
    match runtime.start(&node, &at, &spec(), true).await {
        Err(RuntimeError::EndpointTaken { detail, .. }) => assert!(detail.contains(&at.to_string()), "{detail}"),
        other => panic!("a pinned start on a taken endpoint gave {other:?}"),
    }
    let moved = runtime.start(&node, &at, &spec(), false).await.unwrap();
    assert_ne!(moved, at);
    assert_eq!(moved.host, at.host, "a moved node stays in its region");
    client(&moved).await.ping().await.unwrap();
    runtime.remove(&node).await.unwrap();
}

/// A start dropped half-way (Terraform's stop request) leaves a node that the next call
/// finishes or removes, and nothing running after the removal; dropped at several points, so
/// that some cut the engine's calls short while others are still under way when the next
/// start comes.
async fn a_cancelled_start_is_finished_or_removed_by_the_next_call(h: &dyn Harness) {
    let runtime = h.runtime();
    let node = NodeId::data(&h.name("cancelled"), 0);
    for cut_after in [1, 2, 5, 10, 20, 50, 100, 200].map(Duration::from_millis) {
        let at = runtime.place(&node, h.region()).await.unwrap();
        let cut_short = tokio::time::timeout(cut_after, runtime.start(&node, &at, &spec(), true)).await;
        if cut_after == Duration::from_millis(1) {
            assert!(cut_short.is_err(), "the start should not finish within a millisecond");
        }
        let at = match runtime.start(&node, &at, &spec(), false).await {
            Ok(at) => at,
            Err(e) => panic!("a start after one cut short at {cut_after:?} failed: {e}"),
        };
        client(&at).await.ping().await.unwrap();
        let cut_short = tokio::time::timeout(cut_after, runtime.remove(&node)).await;
        drop(cut_short);
        runtime.remove(&node).await.unwrap();
        assert_eq!(runtime.state(&node).await, NodeState::Stopped);
        assert!(
            NodeClient::connect(&at.host, at.port, PASSWORD, None, Duration::from_millis(500))
                .await
                .is_err(),
            "a node removed after a removal cut short at {cut_after:?} still answers"
        );
    }
}

/// A Sentinel's spec: it watches group `g`, whose primary is said to be at `primary_port`.
fn sentinel_spec(primary_host: &str, primary_port: u16) -> NodeSpec {
    let config = SentinelConfig {
        group: "g".into(),
        primary_host: primary_host.into(),
        primary_port,
        quorum: 2,
        down_after_ms: 60_000,
        client_password: PASSWORD.into(),
        auth_password: "contract-sentinel".into(),
        tls_auth_clients: None,
    };
    NodeSpec {
        settings: config.render(),
        password: PASSWORD.into(),
        tls: None,
    }
}

/// Where the Sentinel at `at` says group `g`'s primary is.
async fn watched_primary(at: &Endpoint) -> Vec<String> {
    client(at)
        .await
        .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "g"])
        .await
        .unwrap()
}

/// A Sentinel restarted where it was keeps its config (Sentinel writes what it learns there);
/// moved off a taken port, it starts from a new one and answers where it moved.
async fn a_sentinel_keeps_its_config_where_it_was_and_answers_where_it_moved(h: &dyn Harness) {
    let runtime = h.runtime();
    let node = NodeId::sentinel(&h.name("watcher"), 0);
    let at = runtime.place(&node, h.region()).await.unwrap();
    let at = runtime
        .start(&node, &at, &sentinel_spec(&at.host, 7000), false)
        .await
        .unwrap();
    assert_eq!(watched_primary(&at).await, [at.host.clone(), "7000".into()]);
    runtime.stop(&node).await.unwrap();
    let again = runtime
        .start(&node, &at, &sentinel_spec(&at.host, 7001), false)
        .await
        .unwrap();
    assert_eq!(again, at);
    assert_eq!(
        watched_primary(&at).await,
        [at.host.clone(), "7000".into()],
        "restarted where it was, it kept its config"
    );
    runtime.stop(&node).await.unwrap();
    let squatter = h.occupy(&at);
    let moved = runtime
        .start(&node, &at, &sentinel_spec(&at.host, 7001), false)
        .await
        .unwrap();
    assert_ne!(moved, at);
    assert_eq!(
        watched_primary(&moved).await,
        [at.host.clone(), "7001".into()],
        "moved, it starts from a new config"
    );
    drop(squatter);
    runtime.remove(&node).await.unwrap();
}

/// Records: a name is taken once, a record reads back as saved, and a removed one is gone.
async fn a_record_is_created_once_saved_and_removed(h: &dyn Harness) {
    let runtime = h.runtime();
    let mut main = record(&h.name("main"), None);
    registry::create(&runtime, &mut main, LEASE).await.unwrap();
    assert!(
        !registry::name_in_use(runtime.as_ref(), &h.name("main")).await.unwrap(),
        "a create under way does not take the name yet"
    );
    registry::finish_create(runtime.as_ref(), &mut main).await.unwrap();
    assert!(registry::name_in_use(runtime.as_ref(), &h.name("main")).await.unwrap());
    let err = registry::create(&runtime, &mut record(&h.name("main"), None), LEASE)
        .await
        .unwrap_err();
    assert!(matches!(err, RecordError::AlreadyExists { .. }), "{err}");
    main.termination_protection = true;
    runtime.store().save(&main).await.unwrap();
    assert_eq!(runtime.store().load(&h.name("main")).await.unwrap(), Some(main.clone()));
    registry::remove(&runtime, &main).await.unwrap();
    assert_eq!(runtime.store().load(&h.name("main")).await.unwrap(), None);
}

/// Eight replicas created at once: five get a slot, three are refused, and a primary with
/// replicas is not removed.
async fn concurrent_replica_creates_never_exceed_the_limit(h: &dyn Harness) {
    let runtime = h.runtime();
    registry::create(&runtime, &mut record(&h.name("main"), None), LEASE)
        .await
        .unwrap();
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..8 {
        let runtime = runtime.clone();
        let (replica, primary) = (h.name(&format!("r{i}")), h.name("main"));
        creates.spawn(async move { registry::create(&runtime, &mut replica_of(&replica, &primary), LEASE).await });
    }
    let mut refused = 0;
    while let Some(result) = creates.join_next().await {
        match result.unwrap() {
            Ok(()) => {}
            Err(RecordError::ReplicaLimit { max: 5, .. }) => refused += 1,
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(refused, 3);
    let replicas = registry::replicas_of(runtime.as_ref(), &h.name("main")).await.unwrap();
    assert_eq!(replicas.len(), 5);
    let err = registry::remove(&runtime, &record(&h.name("main"), None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("still has read replicas"), "{err}");
    // A replica gone frees its slot for another.
    let gone = runtime.store().load(&replicas[0]).await.unwrap().unwrap();
    registry::remove(&runtime, &gone).await.unwrap();
    registry::create(&runtime, &mut replica_of(&h.name("late"), &h.name("main")), LEASE)
        .await
        .unwrap();
    assert!(
        registry::replicas_of(runtime.as_ref(), &h.name("main"))
            .await
            .unwrap()
            .contains(&h.name("late"))
    );
}

/// A replica needs a primary that exists and is a primary; a refused one leaves its name free.
async fn a_replica_of_a_missing_or_replica_primary_is_refused(h: &dyn Harness) {
    let runtime = h.runtime();
    let err = registry::create(&runtime, &mut replica_of(&h.name("orphan"), &h.name("nowhere")), LEASE)
        .await
        .unwrap_err();
    assert!(matches!(err, RecordError::PrimaryMissing { .. }), "{err}");
    assert_eq!(runtime.store().load(&h.name("orphan")).await.unwrap(), None);
    registry::create(&runtime, &mut record(&h.name("main"), None), LEASE)
        .await
        .unwrap();
    registry::create(&runtime, &mut replica_of(&h.name("r1"), &h.name("main")), LEASE)
        .await
        .unwrap();
    let err = registry::create(&runtime, &mut replica_of(&h.name("r2"), &h.name("r1")), LEASE)
        .await
        .unwrap_err();
    assert!(matches!(err, RecordError::PrimaryMissing { .. }), "{err}");
}

/// A primary being removed takes no new replica, even one that got its slot first.
async fn a_primary_being_removed_takes_no_new_replica(h: &dyn Harness) {
    let runtime = h.runtime();
    let mut main = record(&h.name("main"), None);
    registry::create(&runtime, &mut main, LEASE).await.unwrap();
    main.removing = Some(Lease::new("another-run".into(), LEASE));
    runtime.store().save(&main).await.unwrap();
    let err = registry::create(&runtime, &mut replica_of(&h.name("r1"), &h.name("main")), LEASE)
        .await
        .unwrap_err();
    assert!(matches!(err, RecordError::PrimaryMissing { .. }), "{err}");
    assert!(runtime.store().slot_holders(&h.name("main")).await.unwrap().is_empty());
}

/// A create whose lease still holds keeps its name; one whose lease ran out is the leftover
/// of an interrupted create and makes way.
async fn an_interrupted_create_makes_way_once_its_lease_ends(h: &dyn Harness) {
    let runtime = h.runtime();
    let mut held = record(&h.name("held"), None);
    held.creating = Some(Lease::new("another-run".into(), LEASE));
    assert_eq!(runtime.store().insert(&held).await.unwrap(), None);
    let err = registry::create(&runtime, &mut record(&h.name("held"), None), LEASE)
        .await
        .unwrap_err();
    assert!(matches!(err, RecordError::BeingCreated { .. }), "{err}");
    let mut stale = record(&h.name("stale"), None);
    stale.creating = Some(Lease::new("another-run".into(), Duration::ZERO));
    stale.region = "left-over".into();
    assert_eq!(runtime.store().insert(&stale).await.unwrap(), None);
    registry::create(&runtime, &mut record(&h.name("stale"), None), LEASE)
        .await
        .unwrap();
    assert_eq!(
        runtime.store().load(&h.name("stale")).await.unwrap().unwrap().region,
        "r"
    );
}

/// A lock is held by one run at a time, however many race for it; only its holder releases
/// it; the registry's group lock takes and releases it.
async fn a_lock_is_held_by_one_run_at_a_time(h: &dyn Harness) {
    let runtime = h.runtime();
    let store = runtime.store();
    let name = h.name("locked");
    let takes = (0..8).map(|k| {
        let lease = Lease::new(format!("run-{k}"), LEASE);
        let name = name.clone();
        let runtime = runtime.clone();
        async move { (k, runtime.store().take_lock(&name, &lease).await.unwrap()) }
    });
    let taken = futures_util::future::join_all(takes).await;
    let winners: Vec<usize> = taken
        .iter()
        .filter(|(_, held)| held.is_none())
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(winners.len(), 1, "{taken:?}");
    let winner = format!("run-{}", winners[0]);
    let other = Lease::new("run-other".into(), LEASE);
    store.release_lock(&name, "run-other").await.unwrap();
    assert!(store.take_lock(&name, &other).await.unwrap().is_some());
    store.release_lock(&name, &winner).await.unwrap();
    assert_eq!(store.take_lock(&name, &other).await.unwrap(), None);
    store.release_lock(&name, "run-other").await.unwrap();

    registry::lock_group(&runtime, &name).await.unwrap();
    assert!(store.take_lock(&name, &other).await.unwrap().is_some());
    registry::unlock_group(&runtime, &name).await.unwrap();
    assert_eq!(store.take_lock(&name, &other).await.unwrap(), None);
    store.release_lock(&name, "run-other").await.unwrap();
}

macro_rules! contract_tests {
    ($runtime:ident, $harness:expr, [$($test:ident),* $(,)?]) => {
        mod $runtime {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let harness = $harness;
                    super::$test(&harness).await;
                }
            )*
        }
    };
}

contract_tests!(
    local,
    Local::new(),
    [
        nodes_keep_their_data_across_a_restart_and_go_with_remove,
        a_taken_endpoint_fails_a_pinned_start_and_moves_an_unpinned_one,
        a_cancelled_start_is_finished_or_removed_by_the_next_call,
        a_sentinel_keeps_its_config_where_it_was_and_answers_where_it_moved,
        a_record_is_created_once_saved_and_removed,
        concurrent_replica_creates_never_exceed_the_limit,
        a_replica_of_a_missing_or_replica_primary_is_refused,
        a_primary_being_removed_takes_no_new_replica,
        an_interrupted_create_makes_way_once_its_lease_ends,
        a_lock_is_held_by_one_run_at_a_time,
    ]
);

contract_tests!(
    docker,
    Docker::new(),
    [
        nodes_keep_their_data_across_a_restart_and_go_with_remove,
        a_taken_endpoint_fails_a_pinned_start_and_moves_an_unpinned_one,
        a_cancelled_start_is_finished_or_removed_by_the_next_call,
        a_sentinel_keeps_its_config_where_it_was_and_answers_where_it_moved,
        a_record_is_created_once_saved_and_removed,
        concurrent_replica_creates_never_exceed_the_limit,
        a_replica_of_a_missing_or_replica_primary_is_refused,
        a_primary_being_removed_takes_no_new_replica,
        an_interrupted_create_makes_way_once_its_lease_ends,
        a_lock_is_held_by_one_run_at_a_time,
    ]
);

/// Docker only (local nodes are never out of reach): a node whose engines do not all answer
/// is `Unreachable`, not `Stopped`, within the bound of one question, and an engine that did
/// not answer is not waited for again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_state_behind_an_engine_that_does_not_answer_is_unreachable_in_bounded_time() {
    let mut settings = docker_hosts::settings();
    // An address on the test hosts' network that nothing answers at.
    settings.regions[1]
        .hosts
        .push(terraform_provider_valkey::runtime::docker::DockerHost {
            url: "tcp://10.77.0.99:2376".into(),
            advertise_address: "10.77.0.99".into(),
        });
    let runtime = DockerRuntime::configure(&settings).unwrap();
    let node = NodeId::data(&format!("absent-{}", docker_hosts::marker()), 0);
    let started = std::time::Instant::now();
    assert_eq!(runtime.state(&node).await, NodeState::Unreachable);
    let first = started.elapsed();
    assert!(first < Duration::from_secs(15), "took {first:?}");
    let again = std::time::Instant::now();
    assert_eq!(runtime.state(&node).await, NodeState::Unreachable);
    assert!(
        again.elapsed() < Duration::from_secs(1),
        "the silent engine was waited for again: {:?}",
        again.elapsed()
    );
    // Where every engine answers, a node that is nowhere is simply stopped.
    let reachable = DockerRuntime::configure(&docker_hosts::settings()).unwrap();
    assert_eq!(reachable.state(&node).await, NodeState::Stopped);
}

/// Docker only (a local lock dies with its process): a group lock whose holder was killed on
/// another machine makes way once its lease has run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_a_group_lock_whose_lease_ran_out_makes_way() {
    let harness = Docker::new();
    let runtime = harness.runtime();
    let name = harness.name("stale-lock");
    let dead = Lease::new("a-run-killed-elsewhere".into(), Duration::ZERO);
    assert_eq!(runtime.store().take_lock(&name, &dead).await.unwrap(), None);
    registry::lock_group(&runtime, &name).await.unwrap();
    let holder = runtime
        .store()
        .take_lock(&name, &Lease::new("run-other".into(), LEASE))
        .await
        .unwrap();
    assert_eq!(holder.map(|l| l.owner), Some(runtime.lease_owner()));
    registry::unlock_group(&runtime, &name).await.unwrap();
}
