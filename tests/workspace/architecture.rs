//! Architecture invariants: dependency direction, a pure core, and documented files.

use std::collections::{BTreeMap, BTreeSet};

use analytics_tests::{cargo_metadata, rust_files, workspace_root};
use serde_json::Value;

/// Crates that do network, database or file I/O; `analytics-core` must reach none of them.
const IO_CRATES: &[&str] = &[
    "sqlx",
    "sqlx-core",
    "reqwest",
    "lettre",
    "poem",
    "poem-openapi",
    "redis",
    "hyper",
    "mio",
    "socket2",
    "libsqlite3-sys",
    "tokio-postgres",
    "rusqlite",
    "native-tls",
    "openssl",
    "rustls",
];

/// Tokio features that do I/O.
const TOKIO_IO_FEATURES: &[&str] = &["net", "fs", "io-std", "process", "signal", "full"];

fn packages(meta: &Value) -> BTreeMap<String, Value> {
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().expect("id").to_owned(), p.clone()))
        .collect()
}

fn workspace_package_id(meta: &Value, name: &str) -> String {
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["id"].as_str())
        .unwrap_or_else(|| panic!("no package {name}"))
        .to_owned()
}

/// `cargo tree` of `analytics-core` alone (features resolved as if only core were built),
/// normal dependencies only: `(name, features)` per line.
fn core_tree(features: &str) -> Vec<(String, Vec<String>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut args = vec![
        "tree",
        "-p",
        "analytics-core",
        "-e",
        "normal",
        "--prefix",
        "none",
        "-f",
        "{p}|{f}",
    ];
    if !features.is_empty() {
        args.extend(["--features", features]);
    }
    let out = std::process::Command::new(cargo)
        .args(&args)
        .current_dir(workspace_root())
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (pkg, feats) = l.split_once('|')?;
            let name = pkg.split_whitespace().next()?.to_owned();
            let feats = feats
                .trim_end_matches(" (*)")
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect();
            Some((name, feats))
        })
        .collect()
}

#[test]
fn core_depends_on_no_io_crate() {
    for features in ["", "testkit"] {
        let tree = core_tree(features);
        assert!(tree.iter().any(|(n, _)| n == "serde"), "the tree was read");
        let mut offenders = BTreeSet::new();
        for (name, feats) in &tree {
            if IO_CRATES.contains(&name.as_str()) {
                offenders.insert(name.clone());
            }
            if name == "tokio" {
                for f in feats {
                    if TOKIO_IO_FEATURES.contains(&f.as_str()) {
                        offenders.insert(format!("tokio/{f}"));
                    }
                }
            }
            if name.starts_with("analytics-") && name != "analytics-core" {
                offenders.insert(name.clone());
            }
        }
        assert!(
            offenders.is_empty(),
            "analytics-core (features {features:?}) reaches {offenders:?}"
        );
    }
}

#[test]
fn core_manifest_asks_tokio_for_no_io_features() {
    let meta = cargo_metadata();
    let core = &packages(&meta)[&workspace_package_id(&meta, "analytics-core")];
    for dep in core["dependencies"].as_array().expect("deps") {
        if dep["kind"].is_null() {
            let name = dep["name"].as_str().expect("name");
            assert!(
                !IO_CRATES.contains(&name),
                "analytics-core depends on {name}"
            );
            if name == "tokio" {
                for f in dep["features"].as_array().expect("features") {
                    let f = f.as_str().expect("feature");
                    assert!(
                        !TOKIO_IO_FEATURES.contains(&f),
                        "analytics-core enables tokio/{f}"
                    );
                }
            }
        }
    }
}

#[test]
fn dependencies_point_one_way() {
    let meta = cargo_metadata();
    let pkgs = packages(&meta);
    // crate -> the workspace crates it may depend on (normal dependencies).
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("analytics-core", &[][..]),
        ("analytics-store-pg", &["analytics-core"][..]),
        ("analytics-store-sqlite", &["analytics-core"][..]),
        ("analytics-notify", &["analytics-core"][..]),
        (
            "analytics-server",
            &[
                "analytics-core",
                "analytics-store-pg",
                "analytics-store-sqlite",
                "analytics-notify",
            ][..],
        ),
    ]);
    for pkg in pkgs.values() {
        let name = pkg["name"].as_str().expect("name");
        let Some(allowed) = allowed.get(name) else {
            continue;
        };
        for dep in pkg["dependencies"].as_array().expect("deps") {
            let dep_name = dep["name"].as_str().expect("name");
            if dep_name.starts_with("analytics-") && dep["kind"].is_null() {
                assert!(
                    allowed.contains(&dep_name),
                    "{name} must not depend on {dep_name}"
                );
            }
        }
    }
    // Nothing depends on the server, in any kind of dependency.
    for pkg in pkgs.values() {
        for dep in pkg["dependencies"].as_array().expect("deps") {
            if dep["name"] == "analytics-server" {
                let name = pkg["name"].as_str().expect("name");
                assert!(
                    ["analytics-tests", "analytics-benches", "analytics-examples"].contains(&name),
                    "{name} depends on analytics-server"
                );
            }
        }
    }
}

#[test]
fn no_openssl_or_native_tls_anywhere() {
    let meta = cargo_metadata();
    let names: BTreeSet<&str> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for banned in [
        "openssl",
        "openssl-sys",
        "native-tls",
        "aws-lc-sys",
        "aws-lc-rs",
    ] {
        assert!(
            !names.contains(banned),
            "{banned} is in the dependency graph; use rustls with ring"
        );
    }
}

#[test]
fn every_crate_uses_workspace_lints() {
    let meta = cargo_metadata();
    let root = workspace_root();
    for member in meta["workspace_members"].as_array().expect("members") {
        let pkg = &packages(&meta)[member.as_str().expect("id")];
        let manifest = std::fs::read_to_string(pkg["manifest_path"].as_str().expect("path"))
            .expect("read manifest");
        assert!(
            manifest.contains("[lints]\nworkspace = true"),
            "{} does not use the workspace lints",
            pkg["name"]
        );
    }
    assert!(root.join("Cargo.toml").exists());
}

/// Every Rust file opens with a `//!` line saying what it holds.
#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let root = workspace_root();
    let mut missing = Vec::new();
    for dir in [
        "analytics-core",
        "analytics-store-pg",
        "analytics-store-sqlite",
        "analytics-notify",
        "analytics-server",
        "examples",
        "benches",
        "tests",
    ] {
        for file in rust_files(&root.join(dir)) {
            let text = std::fs::read_to_string(&file).expect("read");
            if !text.starts_with("//!") {
                missing.push(
                    file.strip_prefix(&root)
                        .unwrap_or(&file)
                        .display()
                        .to_string(),
                );
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files without a leading //! doc: {missing:#?}"
    );
}

/// Core never reads the wall clock except through `SystemClock`.
#[test]
fn core_reads_the_clock_only_in_system_clock() {
    let root = workspace_root().join("analytics-core").join("src");
    let mut offenders = Vec::new();
    for file in rust_files(&root) {
        let text = std::fs::read_to_string(&file).expect("read");
        let rel = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        for pattern in ["Utc::now", "SystemTime::now", "Instant::now", "Local::now"] {
            let allowed = rel == "clock.rs" && pattern == "Utc::now";
            if !allowed && text.contains(pattern) {
                offenders.push(format!("{rel}: {pattern}"));
            }
        }
        for pattern in ["std::fs", "std::net", "tokio::net", "tokio::fs"] {
            if text.contains(pattern) {
                offenders.push(format!("{rel}: {pattern}"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "core reads the clock or does I/O: {offenders:?}"
    );
}
