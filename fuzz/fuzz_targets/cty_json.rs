//! Terraform sends type constraints as JSON and some values (import, upgrade of state) as cty
//! JSON. The input is a type's JSON, a NUL byte, then a value's JSON: both must parse or fail
//! cleanly, and a parsed value must survive a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use terraform_provider_valkey::tfplug::{Type, Value};

fuzz_target!(|data: &[u8]| {
    let (type_json, value_json) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(ty) = Type::from_json_bytes(type_json) else {
        return;
    };
    let round_trip = Type::from_json_bytes(&ty.to_json_bytes()).expect("a parsed type re-parses");
    assert_eq!(round_trip, ty);
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(value_json) else {
        return;
    };
    let Ok(value) = Value::from_serde_json(&json, &ty) else {
        return;
    };
    let back = value.to_serde_json();
    let again = Value::from_serde_json(&back, &ty).expect("a decoded value decodes again");
    assert_eq!(again.to_serde_json(), back, "a JSON round trip changed the value");
});
