//! The engine: everything that does I/O (terraform, SSH, HTTP, the store's writers) and the
//! deployment pipeline. It never imports ratatui; clients talk to it through `protocol`.

pub mod workspace;
