//! Randomised robustness tests of everything that parses input from outside the process: the
//! cty msgpack and JSON decoders, cty type JSON, and the handshake environment. Each input
//! must give a value or an error, never a panic. Seeded, so a failure reproduces.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::handshake::{MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE, read_environment};
use super::msgpack;
use super::types::Type;
use super::value::{Number, Value};

/// Random inputs per test; each is decoded against every one of `Type::examples()`.
const RUNS: usize = 20_000;

fn sample_value() -> (Value, Type) {
    let ty = Type::Object(BTreeMap::from([
        ("a".to_string(), Type::String),
        (
            "b".to_string(),
            Type::list(Type::Object(BTreeMap::from([("c".to_string(), Type::Number)]))),
        ),
    ]));
    let value = Value::Object(BTreeMap::from([
        ("a".to_string(), Value::String("héllo".into())),
        (
            "b".to_string(),
            Value::List(vec![
                Value::Object(BTreeMap::from([("c".to_string(), Value::Number(Number::Float(1.5)))])),
                Value::Object(BTreeMap::from([("c".to_string(), Value::Unknown)])),
                Value::Null,
            ]),
        ),
    ]));
    (value, ty)
}

#[test]
fn msgpack_decoder_survives_random_and_mutated_input() {
    let mut rng = StdRng::seed_from_u64(0x7a1c);
    let all_types = Type::examples();
    let (value, ty) = sample_value();
    let valid = msgpack::encode(&value, &ty).unwrap();
    for run in 0..RUNS {
        let bytes: Vec<u8> = if run % 2 == 0 {
            let len = rng.random_range(0..64);
            (0..len).map(|_| rng.random()).collect()
        } else {
            let mut mutated = valid.clone();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..mutated.len());
                mutated[i] = rng.random();
            }
            mutated.truncate(rng.random_range(1..=mutated.len()));
            mutated
        };
        for t in &all_types {
            let _ = msgpack::decode(&bytes, t);
        }
    }
}

#[test]
fn json_and_type_decoders_survive_random_input() {
    let mut rng = StdRng::seed_from_u64(0x15a0);
    let alphabet = br#"{}[]",:0123456789.-eE truefalsnul"abcx\"#;
    let all_types = Type::examples();
    for _ in 0..RUNS {
        let len = rng.random_range(0..48);
        let text: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect();
        let _ = Type::from_json_bytes(&text);
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&text) {
            for t in &all_types {
                let _ = Value::from_serde_json(&json, t);
            }
        }
    }
}

#[test]
fn handshake_parser_survives_random_environment() {
    let mut rng = StdRng::seed_from_u64(0x4a5d);
    let pieces = [
        "",
        "6",
        "5,6",
        "x",
        "-1",
        "0",
        "65535",
        "65536",
        "99999999999",
        " 7 ",
        "6,",
        ",",
        "é",
    ];
    for _ in 0..RUNS {
        let pick = |rng: &mut StdRng| pieces[rng.random_range(0..pieces.len())].to_string();
        let versions = pick(&mut rng);
        let (min, max) = (pick(&mut rng), pick(&mut rng));
        let env = move |key: &str| match key {
            k if k == MAGIC_COOKIE_KEY => Some(MAGIC_COOKIE_VALUE.to_string()),
            "PLUGIN_PROTOCOL_VERSIONS" => Some(versions.clone()),
            "PLUGIN_MIN_PORT" => Some(min.clone()),
            "PLUGIN_MAX_PORT" => Some(max.clone()),
            _ => None,
        };
        if let Ok(config) = read_environment(env)
            && let Some((lo, hi)) = config.port_range
        {
            assert!(lo <= hi && lo > 0);
        }
    }
}
