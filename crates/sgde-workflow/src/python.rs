//! Parse-only checks of the Python in `code` nodes.
//!
//! Teacher-written code is untrusted, so validation never runs it: it parses it with the same
//! parser RustPython uses and reads the signature of `run` so that missing or misspelt
//! parameters are reported before the workflow is stored, not at 3 a.m. in production.

use rustpython_ruff_python_ast::Stmt;
use rustpython_ruff_python_parser::parse_module;

/// The entry point every code node defines.
pub const ENTRY_POINT: &str = "run";

/// What the runtime needs to know about a code node's `run` function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSignature {
    /// Named parameters, in order (positional-or-keyword and keyword-only).
    pub params: Vec<String>,
    /// Parameters without a default value.
    pub required: Vec<String>,
    /// `run` takes `**kwargs`, so it receives every available value.
    pub takes_kwargs: bool,
}

/// Why a piece of code is not acceptable, with the 1-based line it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct PythonError {
    pub line: usize,
    pub message: String,
}

/// Parses `code` and returns the signature of its top-level `def run(...)`.
pub fn run_signature(code: &str) -> Result<RunSignature, PythonError> {
    let parsed = parse_module(code).map_err(|e| PythonError {
        line: line_of(code, u32::from(e.location.start()) as usize),
        message: format!("syntax error: {}", e.error),
    })?;
    let run = parsed.syntax().body.iter().rev().find_map(|stmt| match stmt {
        Stmt::FunctionDef(f) if f.name.as_str() == ENTRY_POINT => Some(f),
        _ => None,
    });
    let Some(run) = run else {
        return Err(PythonError { line: 1, message: format!("no top-level `def {ENTRY_POINT}(...)`") });
    };
    if run.is_async {
        return Err(PythonError {
            line: line_of(code, u32::from(run.range.start()) as usize),
            message: format!("`{ENTRY_POINT}` must not be async"),
        });
    }
    let p = &run.parameters;
    if !p.posonlyargs.is_empty() || p.vararg.is_some() {
        return Err(PythonError {
            line: line_of(code, u32::from(run.range.start()) as usize),
            message: format!("`{ENTRY_POINT}` takes values by name: no positional-only or *args parameters"),
        });
    }
    let mut params = Vec::new();
    let mut required = Vec::new();
    for param in p.args.iter().chain(p.kwonlyargs.iter()) {
        let name = param.parameter.name.as_str().to_owned();
        if param.default.is_none() {
            required.push(name.clone());
        }
        params.push(name);
    }
    Ok(RunSignature { params, required, takes_kwargs: p.kwarg.is_some() })
}

/// 1-based line number of a byte offset.
fn line_of(code: &str, offset: usize) -> usize {
    let end = offset.min(code.len());
    code.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_signature_of_run() {
        let sig =
            run_signature("import math\ndef run(inputs, extract, scale=2, **rest):\n    return 1\n").unwrap();
        assert_eq!(sig.params, vec!["inputs", "extract", "scale"]);
        assert_eq!(sig.required, vec!["inputs", "extract"]);
        assert!(sig.takes_kwargs);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = run_signature("def run(inputs):\n    return (1 +\n\nx = \n").unwrap_err();
        assert!(err.line >= 2, "{err}");
        assert!(err.message.starts_with("syntax error"), "{err}");
    }

    #[test]
    fn missing_run_is_an_error() {
        let err = run_signature("def solve(x):\n    return x\n").unwrap_err();
        assert!(err.message.contains("def run"), "{err}");
        assert!(run_signature("def run(*args):\n    return 1\n").is_err());
    }
}
