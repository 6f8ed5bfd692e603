//! Test doubles for model endpoints: a fake OpenAI-compatible server, a simulated student and a
//! scripted teacher.
//!
//! No language model is reachable from CI, yet the client, the runtime and the compiler must be
//! tested against something that behaves like one: over real HTTP, with real failure modes, and
//! with answers whose quality depends on what is asked the way a small model's does. Everything
//! here is deterministic given its inputs, so tests can assert exact outcomes.
//!
//! # Layout
//! - [`server`]: [`FakeOpenAi`] — axum on `127.0.0.1:0`, `POST /v1/chat/completions`,
//!   `GET /v1/models`, request log, max-in-flight counter, server quirks (latency, ignoring `n`,
//!   HTTP 500 on `json_schema`, no `usage`).
//! - [`rules`]: [`Rule`]s — match on model / system / user text, then reply, fail or delegate;
//!   `times(n)` for "fail the first n".
//! - [`fault`]: [`Fault`] — 429 + `Retry-After`, 500, hang, malformed JSON, truncated body,
//!   connection dropped mid-body, wrong content type, empty choices, null content.
//! - [`call`]: [`ChatCall`] (a parsed request) and the [`Responder`] trait.
//! - [`student`]: [`SimulatedStudent`], the [`ProblemGenerator`] and the error profile.
//! - [`teacher`]: [`ScriptedTeacher`], scripted replies and failure modes.
//! - [`rng`], [`tokens`]: deterministic randomness and `usage` counting.
//! - `main.rs`: the `sgde-testkit` binary (`serve`, `problems`).
//!
//! # The simulated student
//! It answers arithmetic word problems from the family in [`student::problems`] (eight
//! GSM8K-style story templates; [`ProblemGenerator`] fills them with small numbers or, for
//! [`Difficulty::Hard`], replaces one quantity with a 6–7 digit number as GSM-Hard does). It
//! finds the question anywhere in the user (else system) messages — the last one if several, so
//! few-shot examples before it do no harm — and decides what to do from cue words in the system
//! and user text, the question itself excluded:
//!
//! | cue (case-insensitive), first match wins | task | reply |
//! |---|---|---|
//! | `extract`, `quantities`, `variables`, `list the numbers`, `given numbers` | extract | JSON object of the template's named quantities, e.g. `{"apples_per_day":12,"days":30,"price":3}` |
//! | `expression` (without `program`/`function`/`def solution`) | write expression | `12 * 30 * 3` (or `{"expression": "..."}`) |
//! | `python`, `program`, `code`, `def solution` | write program | a fenced `def solution():` program assigning the quantities and returning `result` (or `{"program": "..."}`) |
//! | anything else | solve | `Let's compute step by step.` + one line per operation + `The answer is N.` |
//!
//! Reply shape: JSON when the request has a JSON `response_format` or the prompt says `json`
//! (`{"answer": N}` when solving; the key is the single property of a one-property response
//! schema if one is given); just `N` when the prompt says `only the number`, `just the number`,
//! `final answer only` or `only the final answer`. An unrecognised question gets an apology (or
//! `{"error": ...}`).
//!
//! # Error profile ([`StudentProfile::default`])
//! - **Mental arithmetic** (task *solve*), per operation, by operand size: at most 4 digits
//!   (result at most 6): **never wrong**; a 5-digit operand (or 7-digit result): `+`/`-` wrong
//!   5%, `*`/`//` 30%; 6 or more digits (or a result of 8 or more): `+`/`-` 35%, `*`/`//` 90%.
//!   A wrong step is a plausible slip — one digit off by one, a dropped carry (off by a power of
//!   ten), two adjacent digits swapped, or a zero lost/added — and propagates. So small problems
//!   are always right and hard ones mostly wrong, with *different* wrong answers across samples
//!   (a vote over direct answers does not rescue them).
//! - **Extraction**: exact, except that each number of 6+ digits is mis-copied (one digit off)
//!   with probability 2%.
//! - **Programs and expressions**: the right expression, except that with probability 12% per
//!   sample one operator is wrong (`+`→`-`, `-`→`+`, `*`→`+`, `//`→`*`), plus the 2% copy error.
//!   Executing the program gives the right answer in ~86% of samples, and a majority vote over
//!   3–5 samples is right almost always: offloading arithmetic to code plus consensus reaches
//!   100% where direct answers fail.
//!
//! Randomness is a function of (prompt, `seed`, choice index): the same request gives the same
//! reply; sample *i* of a fan-out (seed + *i*, or choice *i* of an `n` request) differs. At
//! `temperature: 0` the seed and choice are ignored (greedy decoding), so all samples agree —
//! consensus then cannot help, as with a real model.
//!
//! # The scripted teacher
//! See [`teacher`]: queues of replies per prompt cue, plus the failure modes (malformed JSON,
//! Python that does not parse, unknown node ids, hang).

pub mod call;
pub mod fault;
pub mod rng;
pub mod rules;
pub mod server;
pub mod student;
pub mod teacher;
pub mod tokens;

pub use call::{CallMessage, ChatCall, Outcome, Responder};
pub use fault::Fault;
pub use rules::{Action, Rule, TextMatch};
pub use server::{FakeOpenAi, FakeOpenAiBuilder, LoggedRequest};
pub use student::{Difficulty, Problem, ProblemGenerator, SimulatedStudent, StudentProfile};
pub use teacher::{ScriptedTeacher, TeacherReply, reference_path};
