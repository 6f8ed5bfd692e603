//! WIP
pub mod error;
mod exec;
mod interp;
pub mod json_bridge;
pub mod limits;
pub mod policy;
mod protocol;
pub mod purity;
mod worker;

pub use error::{ErrorKind, OutputStream, SandboxError};
pub use limits::Limits;
pub use worker::worker_main;
