//! The domain: deployments, their lifecycle, what a user may ask for (validated), the jobs
//! that carry out operations, the rules of what may be done to a deployment, and the
//! framework catalog. Pure data and rules: no I/O beyond parsing the built-in catalog (and the
//! OS's random source for new deployment ids).

pub mod deployment;
pub mod domains;
pub mod framework;
pub mod job;
pub mod policy;
pub mod present;
pub mod spec;
pub mod status;

pub use deployment::{Deployment, DeploymentId, GitAuth, GuestType, Origin, Overrides};
pub use domains::{DomainChange, TlsMode};
pub use framework::{Catalog, Framework};
pub use job::{Job, JobId, JobState, Op, OpKind, Outcome};
pub use spec::{DeploySpec, SpecError};
pub use status::{IllegalTransition, Stage, Status};
