//! Every valid key survives the whole trip: `cli set` into the dbserver, then `cli cget`
//! through each of three frontends, byte for byte. Keys are 1 to 250 bytes of UTF-8, so
//! this covers dot segments (`.`, `..`), `%`, `/`, `?`, `#`, spaces and multi-byte
//! characters up to the 250-byte edge.

mod common;

use std::process::Output;
use std::time::Duration;

use proptest::prelude::*;

/// Runs the real cli with `args` (no shell, so a key may hold any character but NUL).
fn cli(args: &[String]) -> Output {
    common::gclab().arg("cli").args(args).output().unwrap()
}

/// `cli set` then `cli cget` through every frontend; each must print the value exactly.
fn round_trip(topology: &common::Topology, key: &str) -> Result<(), TestCaseError> {
    let value = format!("value of {key}");
    let set = cli(&[
        "set".into(),
        format!("--key={key}"),
        format!("--value={value}"),
        format!("--db={}", topology.db_addr()),
    ]);
    prop_assert!(
        set.status.success(),
        "set {key:?}: {}",
        String::from_utf8_lossy(&set.stderr)
    );
    for frontend in &topology.frontends {
        let cget = cli(&[
            "cget".into(),
            format!("--key={key}"),
            format!("--frontend={}", frontend.addr()),
        ]);
        prop_assert!(
            cget.status.success(),
            "cget {key:?} from {}: {}",
            frontend.addr(),
            String::from_utf8_lossy(&cget.stderr)
        );
        prop_assert_eq!(
            cget.stdout,
            format!("{value}\n").into_bytes(),
            "key {:?}",
            key
        );
    }
    Ok(())
}

/// Pieces that URLs treat specially, and any characters at all.
fn valid_key() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            ".", "..", "%", "%2E", "%2e", "/", "?", "#", " ", "+", "&", "~"
        ])
        .prop_map(str::to_owned),
        "[a-z0-9]{1,4}",
        any::<char>()
            .prop_filter("argv cannot carry NUL", |c| *c != '\0')
            .prop_map(String::from),
    ];
    let joined = prop::collection::vec(piece, 1..8)
        .prop_map(|pieces| pieces.concat())
        .prop_filter("a key is at most 250 bytes", |k| k.len() <= 250);
    // Multi-byte characters up to the edge: 248 to 250 bytes, never a split character.
    let edge =
        (prop::sample::select(vec!['a', 'é', '€', '𝄞']), 0usize..3).prop_map(|(c, slack)| {
            let mut key = String::new();
            while key.len() + c.len_utf8() <= 250 - slack {
                key.push(c);
            }
            key
        });
    prop_oneof![4 => joined, 1 => edge]
}

fn topology(runtime: &tokio::runtime::Runtime) -> common::Topology {
    runtime.block_on(common::start(3, Duration::ZERO, |_| {}))
}

#[test]
fn keys_that_urls_treat_specially_round_trip_through_every_frontend() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let topology = topology(&runtime);
    let longest = "ё".repeat(125); // 250 bytes of two-byte characters
    for key in [
        ".", "..", "...", "./x", "../x", "x/..", "%2E", "%2E%2E", "%", "100%", "a/b", "/", "?",
        "#", "?x=1#y", " ", "a b", "ключ", "𝄞", &longest,
    ] {
        round_trip(&topology, key).unwrap();
    }
    runtime.block_on(topology.stop());
}

#[test]
fn a_key_one_byte_over_the_edge_is_refused_with_the_limit() {
    let key = format!("{}a", "ё".repeat(125)); // 251 bytes
    let out = cli(&["cget".into(), format!("--key={key}"), "--port=1".into()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("251 bytes long; the limit is 250"),
        "{stderr}"
    );
}

#[test]
fn every_valid_key_round_trips_through_every_frontend() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let topology = topology(&runtime);
    proptest!(ProptestConfig::with_cases(48), |(key in valid_key())| {
        round_trip(&topology, &key)?;
    });
    runtime.block_on(topology.stop());
}
