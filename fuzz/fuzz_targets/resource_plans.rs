//! What Terraform sends the resources' validate and plan calls: well-typed configurations,
//! prior states and proposed states, with any attribute null, unknown or odd. Validation and
//! planning must never panic, and a plan must always conform to the schema (Terraform refuses
//! a plan that does not, calling it a provider bug).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use terraform_provider_valkey::resources::read_replica_model::ReadReplicaModel;
use terraform_provider_valkey::resources::service_model::ServiceModel;
use terraform_provider_valkey::resources::{read_replica_plan, service_plan};
use terraform_provider_valkey::tfplug::schema::Block;
use terraform_provider_valkey::tfplug::schema_derive::schema_for;
use terraform_provider_valkey::tfplug::{Type, msgpack};
use terraform_provider_valkey_fuzz::arbitrary_value;

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

/// Both resources' schemas and value types, derived once.
fn schemas() -> &'static [(Block, Type); 2] {
    static SCHEMAS: OnceLock<[(Block, Type); 2]> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let service = schema_for::<ServiceModel>(0).unwrap().block;
        let replica = schema_for::<ReadReplicaModel>(0).unwrap().block;
        let (service_type, replica_type) = (service.value_type(), replica.value_type());
        [(service, service_type), (replica, replica_type)]
    })
}

fn run(u: &mut Unstructured) -> Result<()> {
    let replica = u.arbitrary::<bool>()?;
    let (block, ty) = &schemas()[usize::from(replica)];
    let config = arbitrary_value(ty, u, 0)?;
    let proposed = if u.arbitrary()? {
        config.clone()
    } else {
        arbitrary_value(ty, u, 0)?
    };
    let prior = if u.arbitrary()? {
        terraform_provider_valkey::tfplug::Value::Null
    } else {
        arbitrary_value(ty, u, 0)?
    };
    let (diagnostics, plan) = if replica {
        (
            read_replica_plan::validate_config(&config),
            read_replica_plan::plan_change(block, &prior, &proposed, &config),
        )
    } else {
        (
            service_plan::validate_config(&config),
            service_plan::plan_change(block, &prior, &proposed, &config),
        )
    };
    for d in &diagnostics.0 {
        assert!(!d.summary.is_empty(), "a diagnostic without a summary");
    }
    if !plan.diagnostics.has_errors() && !plan.planned_state.is_null() {
        msgpack::encode(&plan.planned_state, ty).expect("the planned state conforms to the schema");
    }
    Ok(())
}
