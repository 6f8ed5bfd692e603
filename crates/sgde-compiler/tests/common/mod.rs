//! Shared fixture: the simulated student and a scripted teacher behind two fake
//! OpenAI-compatible servers, real HTTP clients (optionally sharing a response cache) and the
//! real sandbox.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sgde_compiler::{CompileRequest, CompilerDeps, Example, Metric};
use sgde_llm::{EndpointConfig, EndpointRegistry, OpenAiClient, ResponseCache, RetryPolicy, StaticSecrets};
use sgde_runtime::RuntimeConfig;
use sgde_sandbox::{Sandbox, SandboxConfig, WorkerCommand};
use sgde_testkit::{
    Difficulty, FakeOpenAi, FakeOpenAiBuilder, ProblemGenerator, Rule, ScriptedTeacher, SimulatedStudent,
    TeacherReply,
};

pub const TEACHER: &str = "teacher-model";
pub const STUDENT: &str = "student-model";
/// Cues that tell the scripted teacher which step is asking (the first line of each system prompt).
pub const CRITIC: &str = "You are the critic";
pub const EDITOR: &str = "You are the editor";

pub struct Fixture {
    pub student: FakeOpenAi,
    pub teacher: FakeOpenAi,
    pub script: Arc<ScriptedTeacher>,
    pub cache: Arc<ResponseCache>,
    pub deps: CompilerDeps,
}

/// How to build a fixture.
pub struct Setup {
    pub teacher_timeout_ms: u64,
    pub teacher_attempts: u32,
    pub teacher_rules: Vec<Rule>,
    pub student_rules: Vec<Rule>,
    pub student_latency: Duration,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            teacher_timeout_ms: 5_000,
            teacher_attempts: 2,
            teacher_rules: Vec::new(),
            student_rules: Vec::new(),
            student_latency: Duration::ZERO,
        }
    }
}

pub async fn sandbox() -> Sandbox {
    let worker = WorkerCommand::locate().expect(
        "the sandbox worker binary is built by `cargo test --workspace` (or `cargo build -p sgde-sandbox`)",
    );
    Sandbox::start(SandboxConfig { workers: 2, ..SandboxConfig::new(worker) }).await.expect("sandbox starts")
}

impl Fixture {
    pub async fn new(script: ScriptedTeacher) -> Self {
        Self::with(script, Setup::default()).await
    }

    pub async fn with(script: ScriptedTeacher, setup: Setup) -> Self {
        let script = Arc::new(script);
        let mut builder = FakeOpenAi::builder().latency(setup.student_latency);
        for rule in &setup.student_rules {
            builder = builder.rule(rule.clone());
        }
        let student =
            builder.responder(Arc::new(SimulatedStudent::new())).start().await.expect("student server");
        let mut builder: FakeOpenAiBuilder = FakeOpenAi::builder();
        for rule in &setup.teacher_rules {
            builder = builder.rule(rule.clone());
        }
        let teacher = builder.responder(script.clone()).start().await.expect("teacher server");
        let cache = Arc::new(ResponseCache::in_memory(1_000_000));
        let deps = deps_for(&student, &teacher, &cache, &setup, sandbox().await);
        Self { student, teacher, script, cache, deps }
    }

    /// The same servers, cache and sandbox behind a fresh registry (a restarted process sharing
    /// the persistent cache).
    pub fn restarted(&self) -> CompilerDeps {
        deps_for(&self.student, &self.teacher, &self.cache, &Setup::default(), self.deps.sandbox.clone())
    }

    /// User messages the teacher received, in order.
    pub fn teacher_prompts(&self) -> Vec<String> {
        self.teacher
            .requests()
            .iter()
            .map(|r| {
                r.body["messages"]
                    .as_array()
                    .map(|m| m.iter().filter_map(|m| m["content"].as_str()).collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default()
            })
            .collect()
    }
}

fn deps_for(
    student: &FakeOpenAi,
    teacher: &FakeOpenAi,
    cache: &Arc<ResponseCache>,
    setup: &Setup,
    sandbox: Sandbox,
) -> CompilerDeps {
    let mut s = EndpointConfig::new(STUDENT, student.base_url(), "sgde-student");
    s.retry = RetryPolicy::fast(3);
    s.max_concurrency = 64;
    let mut t = EndpointConfig::new(TEACHER, teacher.base_url(), "sgde-teacher");
    t.retry = RetryPolicy::fast(setup.teacher_attempts);
    t.timeout_ms = setup.teacher_timeout_ms;
    let registry = EndpointRegistry::new();
    for config in [s, t] {
        let name = config.name.clone();
        let client = OpenAiClient::builder(config)
            .cache(Arc::clone(cache))
            .build(&StaticSecrets::new())
            .expect("client");
        registry.insert(name, Arc::new(client));
    }
    CompilerDeps { models: Arc::new(registry), sandbox, runtime: RuntimeConfig::default() }
}

pub fn examples(seed: u64, count: usize) -> Vec<Example> {
    ProblemGenerator::new(seed)
        .batch(count, Difficulty::Hard)
        .into_iter()
        .map(|p| Example { inputs: json!({"question": p.question}), expected: json!(p.answer) })
        .collect()
}

pub const TASK: &str = "Solve arithmetic word problems about shops, farms, trains and savings.";

/// Three hard training problems, numeric metric, 3 samples, the default budget.
pub fn request() -> CompileRequest {
    let mut r =
        CompileRequest::new(TASK, examples(7, 3), Metric::Numeric { tolerance: 1e-6 }, TEACHER, STUDENT);
    r.seed = 42;
    r
}

// ---- Scripted teacher replies ----

pub fn critique(node: &str, text: &str) -> TeacherReply {
    TeacherReply::Json(json!({
        "diagnosis": text,
        "critiques": [{"node": node, "critique": text, "severity": "high"}]
    }))
}

pub fn edits(ops: Value) -> TeacherReply {
    TeacherReply::Json(json!({"rationale": "scripted", "edits": ops}))
}

pub use sgde_testkit::reference_path::{consensus_ops, offload_ops};

pub fn offload_critique() -> TeacherReply {
    critique(
        "answer",
        "The arithmetic is wrong: the student multiplies 7-digit numbers in its head and slips a digit \
         (e.g. 4,523,412 became 4,523,421). Offload the arithmetic: extract the quantities, have the \
         student write a Python expression, and evaluate it in a code node.",
    )
}

pub fn consensus_critique() -> TeacherReply {
    critique(
        "answer",
        "The expression is sometimes written with a wrong operator, so samples disagree. Wrap \
         expression → evaluation in a 5-sample consensus with a numeric plurality vote.",
    )
}

/// The teacher of the reference path: offload, then consensus.
pub fn reference_teacher() -> ScriptedTeacher {
    ScriptedTeacher::new()
        .script(CRITIC, [offload_critique(), consensus_critique()])
        .script(EDITOR, [edits(offload_ops()), edits(consensus_ops())])
}

/// Whether the workflow has a code node anywhere.
pub fn has_code(spec: &sgde_workflow::WorkflowSpec) -> bool {
    fn walk(nodes: &sgde_workflow::NodeMap) -> bool {
        nodes.iter().any(|(_, n)| match n {
            sgde_workflow::Node::Code(_) => true,
            sgde_workflow::Node::Consensus(c) => walk(&c.body.nodes),
            sgde_workflow::Node::Llm(_) => false,
        })
    }
    walk(&spec.nodes)
}
