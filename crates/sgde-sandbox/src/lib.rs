//! WIP
pub mod error;
mod exec;
mod interp;
pub mod json_bridge;
pub mod limits;
pub mod policy;
mod pool;
mod process;
mod protocol;
pub mod purity;
mod worker;

pub use error::{ErrorKind, OutputStream, SandboxError};
pub use limits::Limits;
pub use pool::{CallOutput, CallRequest, Sandbox, SandboxConfig, SandboxStats};
pub use process::{WORKER_BINARY, WORKER_ENV, WorkerCommand};
pub use worker::worker_main;
