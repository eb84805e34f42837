//! Terraform sends configuration, plans and state as cty values in msgpack. Any bytes must
//! decode to a value or an error; a decoded value must encode, and re-encoding what that
//! gives back must not change it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use terraform_provider_valkey::tfplug::msgpack;
use terraform_provider_valkey_fuzz::type_for;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let ty = type_for(selector);
    let Ok(value) = msgpack::decode(bytes, &ty) else { return };
    let encoded = msgpack::encode(&value, &ty).expect("a decoded value encodes");
    let again = msgpack::decode(&encoded, &ty).expect("an encoded value decodes");
    assert_eq!(
        msgpack::encode(&again, &ty).unwrap(),
        encoded,
        "re-encoding changed the value"
    );
});
