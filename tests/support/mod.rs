//! Test harness: launchers for the real parts the integration tests use.
//!
//! - `parts`: which real parts exist here, and the skip rule (fail under `CI=true`).
//! - `net`: per-test loopback addresses, free ports, bounded waits, a tiny HTTP client.
//! - `process`: child guards that kill their process group on drop; commands with deadlines.
//! - `fakepve`: the Proxmox API fake over HTTPS with its own CA and an API token.
//! - `sshd`: an OpenSSH test host on its own loopback address.
//! - `git`: bare repos with sample apps, served by `git daemon`.
//! - `proxdeck`: running the built binary; app cleanup; secret scans.
//! - `samples`: sample apps made by their frameworks' own tools, and the tools' checks.
//! - `cluster`: fakepve + the rig + git + a proxdeck data dir, for deployments onto real
//!   guests; where a deployment's time went (`Timing`).
//! - `guests`: real guests (fresh Debian booted with systemd-nspawn) and the rig that boots
//!   them for the stand-in templates.

pub mod schema;

pub mod cluster;
pub mod fakepve;
pub mod git;
pub mod guests;
pub mod net;
pub mod parts;
pub mod process;
pub mod proxdeck;
pub mod samples;
pub mod sshd;
