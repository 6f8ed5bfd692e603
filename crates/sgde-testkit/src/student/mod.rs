//! The simulated student: a deterministic stand-in for a small model on arithmetic word problems.
//!
//! - [`problems`]: the generated problem family and [`problems::recognise`];
//! - [`expr`]: the expression trees behind answers, programs and mental arithmetic;
//! - [`mistakes`]: the error profile ([`StudentProfile`]);
//! - [`responder`]: cue reading and the [`SimulatedStudent`] responder.

pub mod expr;
pub mod mistakes;
pub mod problems;
pub mod responder;

pub use mistakes::StudentProfile;
pub use problems::{Difficulty, Problem, ProblemGenerator, TEMPLATES, Template, recognise};
pub use responder::{Shape, SimulatedStudent, Task, read_cues};
