//! [`ScriptedTeacher`]: replies a test wrote in advance, in order, picked by a prompt cue.
//!
//! The compiler's teacher protocol (critique and edit JSON) is defined by the compiler, so this
//! stays generic: a script is a cue (substring or regex over system + user text) and a queue of
//! replies. Each matching call takes the next reply from the first script with one left; when
//! every matching script is exhausted the fallback answers, and without a fallback the call gets
//! HTTP 400 naming the call number, so a test that under-scripts fails loudly. The failure modes
//! the compiler must survive are replies like any other: [`TeacherReply::MalformedJson`],
//! [`TeacherReply::Hang`], [`TeacherReply::python_that_does_not_parse`], and unknown node ids
//! (just JSON naming a node that does not exist).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::call::{ChatCall, Outcome, Responder};
use crate::fault::Fault;
use crate::rules::TextMatch;

/// One scripted teacher reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherReply {
    /// This text verbatim.
    Text(String),
    /// This JSON, serialised.
    Json(Value),
    /// A JSON reply cut off in the middle of an object.
    MalformedJson,
    /// Never answers (the client's timeout fires).
    Hang,
    /// Fails the request with an injected fault.
    #[serde(skip)]
    Fault(Fault),
}

impl TeacherReply {
    /// An edit carrying Python with a syntax error (a `def` with an unclosed parameter list).
    pub fn python_that_does_not_parse() -> Self {
        Self::Json(json!({
            "edits": [{"op": "offload_to_code", "node": "solve",
                       "code": "def solution(quantities:\n    return quantities['a'] *\n"}]
        }))
    }

    fn outcome(&self) -> Outcome {
        match self {
            Self::Text(t) => Outcome::Reply(t.clone()),
            Self::Json(v) => Outcome::Reply(v.to_string()),
            Self::MalformedJson => {
                Outcome::Reply(r#"{"critiques": [{"node": "solve", "critique": "The arith"#.to_owned())
            }
            Self::Hang => Outcome::Fault(Fault::Hang),
            Self::Fault(f) => Outcome::Fault(f.clone()),
        }
    }
}

struct Script {
    cue: Option<TextMatch>,
    replies: VecDeque<TeacherReply>,
}

/// A teacher that plays back scripts; see the module docs.
#[derive(Default)]
pub struct ScriptedTeacher {
    scripts: Mutex<Vec<Script>>,
    fallback: Option<TeacherReply>,
    calls: AtomicU64,
}

impl std::fmt::Debug for ScriptedTeacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedTeacher").field("calls", &self.calls()).finish_non_exhaustive()
    }
}

impl ScriptedTeacher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replies for calls whose system or user text matches `cue`, in order.
    pub fn script(self, cue: impl Into<TextMatch>, replies: impl IntoIterator<Item = TeacherReply>) -> Self {
        self.push(Some(cue.into()), replies);
        self
    }

    /// Replies for any call, in order (after cue-specific scripts added before it).
    pub fn script_any(self, replies: impl IntoIterator<Item = TeacherReply>) -> Self {
        self.push(None, replies);
        self
    }

    /// The reply once every matching script is used up.
    pub fn fallback(mut self, reply: TeacherReply) -> Self {
        self.fallback = Some(reply);
        self
    }

    fn push(&self, cue: Option<TextMatch>, replies: impl IntoIterator<Item = TeacherReply>) {
        let script = Script { cue, replies: replies.into_iter().collect() };
        self.scripts.lock().unwrap_or_else(|p| p.into_inner()).push(script);
    }

    /// Calls answered so far (one per choice).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Scripted replies not yet used.
    pub fn remaining(&self) -> usize {
        self.scripts.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|s| s.replies.len()).sum()
    }

    fn next(&self, call: &ChatCall) -> Option<TeacherReply> {
        let text = format!("{}\n{}", call.system_text(), call.user_text());
        let mut scripts = self.scripts.lock().unwrap_or_else(|p| p.into_inner());
        scripts
            .iter_mut()
            .filter(|s| !s.replies.is_empty() && s.cue.as_ref().is_none_or(|c| c.is_match(&text)))
            .find_map(|s| s.replies.pop_front())
            .or_else(|| self.fallback.clone())
    }
}

impl Responder for ScriptedTeacher {
    fn respond(&self, call: &ChatCall, _choice: u32) -> Outcome {
        let number = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        match self.next(call) {
            Some(reply) => reply.outcome(),
            None => Outcome::Fault(Fault::Status {
                status: 400,
                message: format!("sgde-testkit scripted teacher: no scripted reply left for call #{number}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(user: &str) -> ChatCall {
        ChatCall::from_json(json!({"model": "t", "messages": [{"role": "user", "content": user}]})).unwrap()
    }

    #[test]
    fn scripts_play_in_order_by_cue_then_fall_back() {
        let teacher = ScriptedTeacher::new()
            .script("critique", [TeacherReply::Json(json!({"critiques": []})), TeacherReply::MalformedJson])
            .script("edit", [TeacherReply::Text("edit-1".into())]);
        assert_eq!(
            teacher.respond(&call("please critique"), 0),
            Outcome::Reply(r#"{"critiques":[]}"#.into())
        );
        assert_eq!(teacher.respond(&call("now edit"), 0), Outcome::Reply("edit-1".into()));
        assert!(
            matches!(teacher.respond(&call("critique again"), 0), Outcome::Reply(t) if t.starts_with("{\"critiques\": [{"))
        );
        assert!(matches!(
            teacher.respond(&call("critique more"), 0),
            Outcome::Fault(Fault::Status { status: 400, .. })
        ));
        assert_eq!(teacher.calls(), 4);
        assert_eq!(teacher.remaining(), 0);
        let hanging = ScriptedTeacher::new().fallback(TeacherReply::Hang);
        assert_eq!(hanging.respond(&call("x"), 0), Outcome::Fault(Fault::Hang));
    }

    #[test]
    fn scripts_load_from_json() {
        let replies: Vec<TeacherReply> =
            serde_json::from_value(json!([{"text": "hi"}, {"json": {"a": 1}}, "malformed_json", "hang"]))
                .unwrap();
        assert_eq!(replies.len(), 4);
        assert_eq!(replies[2], TeacherReply::MalformedJson);
    }
}

/// The teacher's edits along the reference path — offload the arithmetic, then vote — that the
/// compiler's tests and the service's tests script, defined once.
pub mod reference_path {
    use serde_json::{Value, json};

    /// Iteration 1 of the reference path: extract the quantities, have the student write a Python
    /// expression, and evaluate it in a code node (capability offloading).
    pub fn offload_ops() -> Value {
        json!([
            {"op": "insert_node", "id": "extract", "dependents": ["answer"], "node": {
                "kind": "llm", "model": "student",
                "system": "You read arithmetic word problems and list every quantity they mention.",
                "prompt": "Extract the quantities from the problem as a JSON object mapping short snake_case names to numbers.\n\nProblem: {{ inputs.question }}",
                "decoding": {"temperature": 0.0, "max_tokens": 256},
                "parser": {"type": "json", "schema": {"type": "object", "additionalProperties": {"type": "number"}}}
            }},
            {"op": "set_prompt", "node": "answer",
             "system": "You write one Python expression that answers an arithmetic word problem.",
             "prompt": "Write a single Python expression that computes the answer, using the names below. Reply with the expression only.\n\nNames: {{ extract | tojson }}\nProblem: {{ inputs.question }}"},
            {"op": "set_parser", "node": "answer", "parser": {"type": "text"}},
            {"op": "set_decoding", "node": "answer", "decoding": {"temperature": 0.7, "max_tokens": 128}},
            {"op": "offload_to_code", "node": "answer", "mode": "insert_after", "renamed_to": "expression",
             "code": "def run(expression, extract):\n    text = expression.strip().strip('`').strip()\n    if text.startswith('python'):\n        text = text[len('python'):].strip()\n    value = eval(text, {'__builtins__': {}}, dict(extract))\n    return int(value) if float(value).is_integer() else value\n"},
            {"op": "rewire", "node": "answer", "deps": ["expression", "extract"]}
        ])
    }

    /// Iteration 2 of the reference path: vote over five samples of expression → evaluation.
    pub fn consensus_ops() -> Value {
        json!([
            {"op": "wrap_in_consensus", "nodes": ["expression", "answer"], "samples": 5,
             "vote": {"method": "plurality", "normalize": {"type": "number", "tolerance": 1e-6}, "quorum": 3}}
        ])
    }
}
