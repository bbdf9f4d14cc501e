//! The domain: deployments, their lifecycle, what a user may ask for (validated), and the
//! framework catalog. Pure data and rules: no I/O beyond parsing the built-in catalog (and the
//! OS's random source for new deployment ids).

pub mod deployment;
pub mod framework;
pub mod spec;
pub mod status;

pub use deployment::{Deployment, DeploymentId, GuestType, Origin, Overrides};
pub use framework::{Catalog, Framework};
pub use spec::{DeploySpec, SpecError};
pub use status::{IllegalTransition, Stage, Status};
