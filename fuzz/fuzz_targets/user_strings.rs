//! Strings users and servers hand the provider: durations, names, primary URIs, region
//! addresses, numbers as text and INFO replies. Each must parse or be refused, never panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use terraform_provider_valkey::provider::parse_regions;
use terraform_provider_valkey::resources::validate;
use terraform_provider_valkey::tfplug::Number;
use terraform_provider_valkey::valkey::{Info, uri};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(d) = validate::duration(text) {
        assert!(!d.is_zero() && d.as_secs() <= 24 * 3600, "{text:?} gave {d:?}");
    }
    if validate::resource_name(text).is_ok() {
        assert!(
            !text.contains('/') && !text.contains('.') && text.len() <= 63,
            "{text:?} accepted"
        );
    }
    if let Ok(up) = uri::parse(text) {
        let again = uri::parse(&uri::format(&up)).expect("a formatted URI parses");
        assert_eq!(again, up);
    }
    let (name, address) = text.split_once('=').unwrap_or((text, text));
    let _ = parse_regions(Some(&BTreeMap::from([(name.to_string(), address.to_string())])));
    let _ = Number::parse(text);
    let info = Info::parse(text);
    let _ = (
        info.role(),
        info.is_valkey(),
        info.primary_link_up(),
        info.get_i64("master_repl_offset"),
    );
});
