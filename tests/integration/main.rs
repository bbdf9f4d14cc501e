//! The one integration-test crate: real parts (SQLite files, terraform, fakepve over HTTPS,
//! OpenSSH, git, sample apps). Harness pieces live in `tests/support/`.

#[path = "../support/mod.rs"]
#[allow(dead_code)]
mod support;

mod apps;
mod autodeploy;
mod crash;
mod domains;
mod e2e;
mod frameworks;
mod guest_rig;
mod hardening;
mod harness;
mod identity;
mod jobs;
mod private_repos;
mod provisioning;
mod proxmox;
mod readme;
mod real_guests;
mod recovery;
mod releases;
mod runner;
mod scale;
mod snapshots;
mod templates;
mod terraform_flow;
mod tui;
mod tui_deploy;
mod vm_e2e;
