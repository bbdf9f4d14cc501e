//! Killed at any moment: a deployment left in flight by a process that died is found on the
//! next start and marked FAILED (interrupted), while one that another live process holds is
//! left alone and cannot be run twice.

use proxdeck::domain::{Deployment, DeploymentId, Stage, Status};
use proxdeck::engine::DataPaths;
use proxdeck::engine::jobs::JobLock;
use proxdeck::store::Store;
use std::process::Command;

fn proxdeck(
    config: &std::path::Path,
    data: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_proxdeck"))
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("PROXMOX_VE_ENDPOINT")
        .env_remove("PROXMOX_VE_API_TOKEN")
        .output()
        .expect("proxdeck runs")
}

#[test]
fn interrupted_deployments_are_recovered_and_busy_ones_are_not_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("config.toml");
    // Proxmox is configured (retry checks it) but never reached: the lock refuses first.
    std::fs::write(
        &config,
        "[proxmox]\nendpoint = \"https://127.0.0.1:9/\"\napi_token = \"root@pam!t=secret\"\n",
    )
    .unwrap();
    let paths = DataPaths::new(&data);
    let mut store = Store::open(&paths.database()).unwrap();
    for (id, name) in [("orph11", "orphan"), ("busy22", "busy")] {
        let d = Deployment {
            id: DeploymentId(id.into()),
            name: name.into(),
            ..Deployment::default()
        };
        store.insert_deployment(&d).unwrap();
        store
            .transition(
                &d.id,
                Status::Provisioning,
                Some(Stage::TerraformApply),
                None,
            )
            .unwrap();
    }
    // This test process plays a live proxdeck working on "busy".
    let _held = JobLock::acquire(&paths, &DeploymentId("busy22".into())).unwrap();

    let out = proxdeck(&config, &data, &["list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("orphan (orph11) was interrupted")
            && stderr.contains("proxdeck retry orph11"),
        "{stderr}"
    );
    assert!(!stderr.contains("busy22"), "{stderr}");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status_of = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .map(|d| d["status"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(status_of("orphan"), "FAILED");
    assert_eq!(status_of("busy"), "PROVISIONING");
    let orphan = store.find("orphan").unwrap();
    assert!(orphan.error.unwrap().contains("interrupted"));

    // The held deployment can be neither retried nor destroyed from here: work is in flight.
    for args in [["retry", "busy"], ["destroy", "busy"]] {
        let mut args = args.to_vec();
        if args[0] == "destroy" {
            args.push("--yes");
        }
        let out = proxdeck(&config, &data, &args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("busy (busy22) is PROVISIONING"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(store.find("busy").unwrap().status, Status::Provisioning);
}
