//! The production binary links no laboratory: no chitchat, no TLS stack,
//! no certificate generator (they belong to `grapevine-perf`).
//!
//! Read from the workspace's Cargo.lock: every package `grapevine-cli`
//! reaches through its dependency lists (normal, build and dev, so a
//! superset of what the binary links; `cargo tree -p grapevine-cli -e
//! normal` is the exact list).

use std::collections::{BTreeSet, HashMap};

const FORBIDDEN: [&str; 4] = ["chitchat", "rustls", "rcgen", "tokio-rustls"];

#[test]
fn the_grapevine_binary_links_no_chitchat_rustls_or_rcgen() {
    let lock_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock");
    let text = std::fs::read_to_string(lock_path).expect("Cargo.lock");
    let lock: toml::Value = toml::from_str(&text).expect("Cargo.lock is TOML");
    // name -> dependency names of every version of it.
    let mut deps: HashMap<String, Vec<String>> = HashMap::new();
    for p in lock["package"].as_array().expect("packages") {
        let name = p["name"].as_str().expect("name").to_string();
        let list = deps.entry(name).or_default();
        for d in p
            .get("dependencies")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
        {
            // "name", "name version" or "name version (source)".
            let d = d.as_str().expect("dependency");
            list.push(d.split(' ').next().unwrap_or(d).to_string());
        }
    }
    assert!(
        deps.contains_key("grapevine-cli"),
        "grapevine-cli in Cargo.lock"
    );
    let mut seen = BTreeSet::new();
    let mut stack = vec!["grapevine-cli".to_string()];
    while let Some(n) = stack.pop() {
        if seen.insert(n.clone()) {
            stack.extend(deps.get(&n).into_iter().flatten().cloned());
        }
    }
    let bad: Vec<_> = FORBIDDEN.iter().filter(|f| seen.contains(**f)).collect();
    assert!(bad.is_empty(), "grapevine-cli reaches {bad:?}");
    // The check itself can see: the laboratory does reach them.
    assert!(deps["grapevine-perf"].iter().any(|d| d == "chitchat"));
}
