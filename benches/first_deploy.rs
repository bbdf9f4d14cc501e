//! The first deploy of each framework onto a fresh guest, and where its time goes. Run with
//! `cargo bench --bench first_deploy` (as root, with what `scripts/test` installs); it prints
//! the table BENCHMARKS.md keeps.
//!
//! Each framework's sample app is deployed through the whole pipeline (fakepve, the stand-in
//! template, terraform, a fresh Debian guest booted by the real-guest rig, SSH, the recipe,
//! the health check), one deployment at a time so that none slows another, then destroyed.
//! The phases come from the deployment's own log (`proxdeck logs --json`): the guest
//! (preflight, render, terraform, which boots the guest), apt (the recipe's package installs
//! and its apt lists), dependencies (pip/npm/composer and a Python virtualenv), build, the
//! rest of provisioning (fetch, env, service) and the health check. The baseline is Flask on
//! Debian 13.
//!
//! `cargo test --all-targets` runs this binary without `--bench`: it then deploys nothing
//! (every one of these deploys is also made by the `real_guests` integration tests) and says
//! so.

#[path = "../tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::path::Path;
use std::time::Duration;
use support::cluster::{Cluster, Timing};
use support::fakepve::OS_TEMPLATE;
use support::git::GitServer;
use support::guests::{Release, rootfs};
use support::net::free_port_any;
use support::samples::{self, Sample};

type Make = fn(&GitServer, &str, &Path) -> anyhow::Result<Sample>;

struct Case {
    framework: &'static str,
    guest: &'static str,
    make: Make,
    extra: &'static [&'static str],
}

fn react(git: &GitServer, name: &str, dir: &Path) -> anyhow::Result<Sample> {
    samples::vite(git, name, "react", dir)
}

fn vue(git: &GitServer, name: &str, dir: &Path) -> anyhow::Result<Sample> {
    samples::vite(git, name, "vue", dir)
}

const DEBIAN12: &[&str] = &["--os-template", OS_TEMPLATE];

fn cases() -> Vec<Case> {
    let d13 = |framework, make: Make| Case {
        framework,
        guest: "Debian 13 container",
        make,
        extra: &[],
    };
    vec![
        d13("flask", samples::flask),
        d13("django", samples::django),
        d13("fastapi", samples::fastapi),
        d13("express", samples::express),
        d13("react", react),
        d13("vue", vue),
        d13("nextjs", samples::nextjs),
        d13("lamp", samples::php),
        Case {
            framework: "flask",
            guest: "Debian 12 container",
            make: samples::flask,
            extra: DEBIAN12,
        },
        Case {
            framework: "express",
            guest: "Debian 12 container",
            make: samples::express,
            extra: DEBIAN12,
        },
        Case {
            framework: "flask",
            guest: "Debian 13 VM (cloud-init)",
            make: samples::flask,
            extra: &["--type", "vm"],
        },
    ]
}

fn secs(d: Duration) -> String {
    format!("{:.0} s", d.as_secs_f64())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "first_deploy: deploys only under `cargo bench --bench first_deploy` (the \
             real_guests integration tests make the same deploys)"
        );
        return;
    }
    for (release, cloud) in [
        (Release::Debian13, false),
        (Release::Debian12, false),
        (Release::Debian13, true),
    ] {
        rootfs(release, cloud).expect("a root filesystem for the guests");
    }
    let cluster = Cluster::start("proxdeck-bench-", 16, true).expect("start the cluster");
    let dir = cluster.root.join("samples");
    std::fs::create_dir_all(&dir).expect("samples dir");
    let mut rows = Vec::new();
    let cases = cases();
    for (i, case) in cases.iter().enumerate() {
        let name = format!("b{i}-{}", case.framework);
        let sample = (case.make)(&cluster.git, &name, &dir).expect("make the sample");
        let port = free_port_any().expect("a port").to_string();
        let mut args = vec![
            "deploy",
            "--repo",
            &sample.git_url,
            "--framework",
            case.framework,
            "--name",
            &name,
            "--port",
            &port,
        ];
        args.extend_from_slice(case.extra);
        let done = cluster.run(&args, Duration::from_secs(1800));
        assert!(done.success(), "{}", cluster.explain(&name, &done));
        let timing = Timing::from_log(&cluster.log_lines(&name));
        eprintln!(
            "first_deploy: {} on a {}: {}",
            case.framework,
            case.guest,
            secs(timing.total)
        );
        rows.push((case, timing));
        let gone = cluster.run(&["destroy", &name, "--yes"], Duration::from_secs(600));
        assert!(gone.success(), "{}", gone.describe());
    }
    let baseline = rows[0].1.total.as_secs_f64().max(1.0);
    println!(
        "| framework | guest | first deploy | ratio | guest (terraform + boot) | apt | dependencies | build | rest of provisioning | health check |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (case, t) in &rows {
        println!(
            "| {} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} |",
            case.framework,
            case.guest,
            secs(t.total),
            t.total.as_secs_f64() / baseline,
            secs(t.guest),
            secs(t.apt),
            secs(t.dependencies),
            secs(t.build),
            secs(t.other + t.ssh),
            secs(t.health),
        );
    }
}
