//! One module per screen (`XxxScreen`): the screen's own state (selection, scroll), how it
//! reacts to an `Action`, and how it renders. Shared data (the deployments) lives in `App` and is
//! lent to the screen; screens never send `Request`s themselves.

pub mod dashboard;

pub use dashboard::DashboardScreen;
