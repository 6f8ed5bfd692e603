//! Running one call inside a sealed interpreter: compile (cached), execute the module body in
//! fresh globals, call the function with the JSON arguments, convert the result.
//!
//! Limits are armed by the caller ([`crate::worker`]), around both compilation and the call,
//! because the compiler folds constants and a source file can be made expensive to compile.

use std::{collections::HashMap, rc::Rc};

use rustpython_vm::{
    AsObject, PyRef, VirtualMachine,
    builtins::{PyBaseExceptionRef, PyCode},
    compiler::{self, CompileOpts, Mode},
    function::{FuncArgs, KwArgs},
    scope::Scope,
};
use serde_json::{Map, Value};

use crate::{
    error::{OutputStream, SandboxError},
    interp::{self, STEP_FILENAME, SealedInterpreter},
    json_bridge::{self, BridgeError},
    limits::Limits,
    purity::{self, Impurity},
};

/// Longest exception message passed back, in characters.
const MAX_MESSAGE_CHARS: usize = 4000;

/// Source compiled once, with its purity verdict.
pub(crate) struct Compiled {
    pub code: PyRef<PyCode>,
    /// `Ok` when the code may run in the warm interpreter; otherwise why not.
    pub purity: Result<(), Impurity>,
}

/// Compiled code by source text. Keyed by the full source rather than a digest, so two
/// sources can never be confused; bounded by clearing when full (steps are few and hot).
pub(crate) struct CodeCache {
    entries: HashMap<String, Result<Rc<Compiled>, SandboxError>>,
    capacity: usize,
}

impl CodeCache {
    pub fn new(capacity: usize) -> Self {
        Self { entries: HashMap::new(), capacity }
    }

    /// The compiled form of `source`, compiling (and caching, errors included) on a miss.
    pub fn get_or_compile(
        &mut self,
        sandbox: &SealedInterpreter,
        source: &str,
    ) -> Result<Rc<Compiled>, SandboxError> {
        if let Some(hit) = self.entries.get(source) {
            return hit.clone();
        }
        let compiled = compile(sandbox, source).map(Rc::new);
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        self.entries.insert(source.to_owned(), compiled.clone());
        compiled
    }
}

fn compile(sandbox: &SealedInterpreter, source: &str) -> Result<Compiled, SandboxError> {
    let code =
        compiler::compile(source, Mode::Exec, STEP_FILENAME, CompileOpts::default()).map_err(|err| {
            let location = err.location();
            SandboxError::Compile {
                message: err.to_string(),
                line: location.map(|l| l.line.get() as u32),
                column: location.map(|l| l.character_offset.get() as u32),
            }
        })?;
    let purity = purity::classify(&code, &sandbox.builtin_names);
    let code = sandbox.enter(|vm| vm.ctx.new_code(code));
    Ok(Compiled { code, purity })
}

/// What a successful call produced.
pub(crate) struct CallValue {
    pub value: Value,
    pub stdout: String,
}

/// Runs `function(**kwargs)` from `compiled` in fresh globals.
pub(crate) fn run(
    sandbox: &SealedInterpreter,
    compiled: &Compiled,
    function: &str,
    kwargs: &Map<String, Value>,
    limits: &Limits,
) -> Result<CallValue, SandboxError> {
    sandbox.enter(|vm| {
        interp::begin_capture(limits.stdout_bytes);
        let routed = sandbox.route_stdout(vm, true);
        let result = match routed {
            Ok(()) => call(vm, sandbox, compiled, function, kwargs, limits),
            Err(exc) => Err(SandboxError::WorkerCrashed { detail: interp::describe(vm, exc) }),
        };
        let _ = sandbox.route_stdout(vm, false);
        let (stdout, overflowed) = interp::end_capture();
        if overflowed {
            return Err(SandboxError::OutputTooLarge {
                stream: OutputStream::Stdout,
                limit_bytes: limits.stdout_bytes as u64,
            });
        }
        result.map(|value| CallValue { value, stdout })
    })
}

fn call(
    vm: &VirtualMachine,
    sandbox: &SealedInterpreter,
    compiled: &Compiled,
    function: &str,
    kwargs: &Map<String, Value>,
    limits: &Limits,
) -> Result<Value, SandboxError> {
    let user_error = |exc| exception_error(vm, sandbox, exc, limits);
    let globals = interp::fresh_globals(vm).map_err(user_error)?;
    let scope = Scope::with_builtins(None, globals.clone(), vm);
    vm.run_code_obj(compiled.code.clone(), scope).map_err(user_error)?;

    let missing = || SandboxError::MissingFunction { function: function.to_owned() };
    let func = globals.get_item_opt(function, vm).map_err(user_error)?.ok_or_else(missing)?;
    if !func.is_callable() {
        return Err(missing());
    }
    let kwargs = kwargs
        .iter()
        .map(|(k, v)| Ok((k.clone(), json_bridge::to_python(v, vm)?)))
        .collect::<Result<KwArgs, _>>()
        .map_err(user_error)?;
    let returned = func.call(FuncArgs::new(Vec::new(), kwargs), vm).map_err(user_error)?;
    json_bridge::from_python(&returned, vm, limits.output_bytes).map_err(|err| match err {
        BridgeError::NotJson(message) => SandboxError::NotJson { message },
        BridgeError::TooLarge => SandboxError::OutputTooLarge {
            stream: OutputStream::Value,
            limit_bytes: limits.output_bytes as u64,
        },
    })
}

/// Turns an exception that escaped the step into an error: type, message and the line in
/// the step's own source (the innermost traceback entry whose code is the step's).
fn exception_error(
    vm: &VirtualMachine,
    sandbox: &SealedInterpreter,
    exc: PyBaseExceptionRef,
    limits: &Limits,
) -> SandboxError {
    let class = exc.class();
    if class.fast_issubclass(&sandbox.output_limit_exc) {
        // The stdout capture raised it; `run` reports the overflow.
        return SandboxError::OutputTooLarge {
            stream: OutputStream::Stdout,
            limit_bytes: limits.stdout_bytes as u64,
        };
    }
    let message = exc
        .as_object()
        .str(vm)
        .map(|s| truncate(&s.to_string_lossy(), MAX_MESSAGE_CHARS))
        .unwrap_or_else(|_| "<exception message could not be rendered>".into());
    if class.fast_issubclass(vm.ctx.exceptions.memory_error) {
        return SandboxError::MemoryLimit {
            memory_bytes: limits.memory_bytes,
            detail: Some(format!("MemoryError: {message}")),
        };
    }
    let mut line = None;
    let mut tb = exc.__traceback__();
    while let Some(entry) = tb {
        if entry.frame.code.source_path().as_str() == STEP_FILENAME {
            line = Some(entry.lineno.get() as u32);
        }
        tb = entry.next.lock().clone();
    }
    SandboxError::User { exc_type: class.name().to_string(), message, line }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
