//! Decides, from compiled bytecode, whether a step may run in the warm interpreter.
//!
//! A worker keeps one interpreter with the allowed modules preloaded, because building one
//! and importing `re`, `fractions`, `statistics`, ... costs tens of milliseconds. Sharing it
//! is only safe for code that cannot change what the next call sees: `math.pi = 3`,
//! `json._default_encoder.indent = 4`, `decimal.getcontext().prec = 5`,
//! `collections.abc.Sequence.register(...)` or `len.__self__.len = ...` all persist in a
//! reused interpreter. Python offers too many routes to shared objects to police them while
//! the code runs, so the worker classifies the code *before* running it:
//!
//! * **Pure** code only names trusted builtins, its own globals and locals, the fast modules
//!   and trusted attribute names (see [`crate::policy`]); it stores no attribute, defines no
//!   class, uses no `import *` and no dunder name. Such code can reach no shared mutable
//!   object, so it runs in the warm interpreter (the fast path).
//! * Everything else runs in a fork of the worker: a copy-on-write child that is discarded
//!   after the call, so whatever it tampers with dies with it.
//!
//! The check reads every instruction of every nested code object, and it is conservative
//! by construction: a name in a code object's name table that no understood instruction
//! accounts for makes the code impure, so an instruction added by a future RustPython cannot
//! silently widen the fast path.

use std::collections::HashSet;

use rustpython_vm::bytecode::{
    CodeObject, ConstantData, Instruction, IntrinsicFunction1, IntrinsicFunction2, OpArgState,
};

use crate::policy::{FAST_MODULES, SAFE_ATTRS, SAFE_BUILTINS};

/// Why code was sent to the fork path; the first reason found. Used in tests and traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Impurity {
    /// Imports a module outside [`FAST_MODULES`] (or a submodule).
    Import(String),
    /// Uses an attribute or imported name outside [`SAFE_ATTRS`].
    Attribute(String),
    /// Names a builtin outside [`SAFE_BUILTINS`].
    Builtin(String),
    /// Uses a dunder name as a global or local name.
    DunderName(String),
    /// Assigns or deletes an attribute.
    AttributeStore(String),
    /// Defines a class, uses `super()` or class-body name lookups.
    Class,
    /// Uses `from module import *`.
    ImportStar,
    /// Uses a class pattern in `match` (it reads attributes by names the check cannot see,
    /// `__dict__` included).
    ClassPattern,
    /// Uses PEP 695 type parameters or `type` aliases (typing machinery).
    TypeParams,
    /// An instruction the classifier does not understand references a name.
    Unaccounted(String),
}

/// Classifies compiled code; `builtin_names` are the names defined in the sandbox's
/// `builtins` module (a global lookup of such a name reaches the builtin).
pub fn classify(code: &CodeObject, builtin_names: &HashSet<String>) -> Result<(), Impurity> {
    check_code(code, builtin_names)?;
    for constant in code.constants.iter() {
        check_constant(constant, builtin_names)?;
    }
    Ok(())
}

fn check_constant(constant: &ConstantData, builtin_names: &HashSet<String>) -> Result<(), Impurity> {
    match constant {
        ConstantData::Code { code } => classify(code, builtin_names),
        ConstantData::Tuple { elements } | ConstantData::Frozenset { elements } => {
            for element in elements {
                check_constant(element, builtin_names)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// How an instruction uses a name from the code object's name table.
enum NameUse {
    Attribute,
    AttributeStore,
    Import,
    ImportFrom,
    GlobalLoad,
    GlobalStore,
}

fn check_code(code: &CodeObject, builtin_names: &HashSet<String>) -> Result<(), Impurity> {
    let mut accounted = vec![false; code.names.len()];
    let mut state = OpArgState::default();
    for unit in code.instructions.iter() {
        let (op, arg) = state.get(*unit);
        let (index, usage) = match op.deoptimize() {
            Instruction::LoadAttr { namei } => (namei.get(arg).name_idx(), NameUse::Attribute),
            Instruction::StoreAttr { namei } | Instruction::DeleteAttr { namei } => {
                (namei.get(arg), NameUse::AttributeStore)
            }
            Instruction::ImportName { namei } => (namei.get(arg), NameUse::Import),
            Instruction::ImportFrom { namei } => (namei.get(arg), NameUse::ImportFrom),
            // LOAD_GLOBAL's argument carries a "push NULL" flag in its low bit.
            Instruction::LoadGlobal { namei } => (namei.get(arg) >> 1, NameUse::GlobalLoad),
            Instruction::LoadName { namei } => (namei.get(arg), NameUse::GlobalLoad),
            Instruction::StoreName { namei }
            | Instruction::StoreGlobal { namei }
            | Instruction::DeleteName { namei }
            | Instruction::DeleteGlobal { namei } => (namei.get(arg), NameUse::GlobalStore),
            Instruction::LoadBuildClass
            | Instruction::LoadSuperAttr { .. }
            | Instruction::LoadFromDictOrGlobals { .. }
            | Instruction::LoadFromDictOrDeref { .. } => return Err(Impurity::Class),
            Instruction::MatchClass { .. } => return Err(Impurity::ClassPattern),
            Instruction::CallIntrinsic1 { func } => {
                match func.try_get(arg) {
                    Ok(
                        IntrinsicFunction1::StopIterationError
                        | IntrinsicFunction1::AsyncGenWrap
                        | IntrinsicFunction1::UnaryPositive
                        | IntrinsicFunction1::ListToTuple,
                    ) => {}
                    Ok(IntrinsicFunction1::ImportStar) => return Err(Impurity::ImportStar),
                    _ => return Err(Impurity::TypeParams),
                }
                continue;
            }
            Instruction::CallIntrinsic2 { func } => {
                if !matches!(func.try_get(arg), Ok(IntrinsicFunction2::PrepReraiseStar)) {
                    return Err(Impurity::TypeParams);
                }
                continue;
            }
            _ => continue,
        };
        let index = index as usize;
        let Some(name) = code.names.get(index) else {
            return Err(Impurity::Unaccounted(format!("name index {index}")));
        };
        check_name(name, usage, builtin_names)?;
        accounted[index] = true;
    }
    if let Some(index) = accounted.iter().position(|seen| !seen) {
        return Err(Impurity::Unaccounted(code.names[index].clone()));
    }
    Ok(())
}

fn check_name(name: &str, usage: NameUse, builtin_names: &HashSet<String>) -> Result<(), Impurity> {
    match usage {
        NameUse::Attribute | NameUse::ImportFrom => {
            if SAFE_ATTRS.contains(&name) {
                Ok(())
            } else {
                Err(Impurity::Attribute(name.to_owned()))
            }
        }
        NameUse::AttributeStore => Err(Impurity::AttributeStore(name.to_owned())),
        NameUse::Import => {
            if FAST_MODULES.contains(&name) {
                Ok(())
            } else {
                Err(Impurity::Import(name.to_owned()))
            }
        }
        NameUse::GlobalLoad => {
            if SAFE_BUILTINS.contains(&name) {
                Ok(())
            } else if name.starts_with("__") {
                Err(Impurity::DunderName(name.to_owned()))
            } else if builtin_names.contains(name) {
                // The user's globals may not define it (`if False: x = 1` still compiles a
                // store), so the lookup can fall through to the builtin.
                Err(Impurity::Builtin(name.to_owned()))
            } else {
                Ok(())
            }
        }
        NameUse::GlobalStore => {
            if name.starts_with("__") {
                Err(Impurity::DunderName(name.to_owned()))
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustpython_vm::compiler::{self, CompileOpts, Mode};

    fn check(source: &str) -> Result<(), Impurity> {
        let code = compiler::compile(source, Mode::Exec, "<test>", CompileOpts::default())
            .expect("test source compiles");
        let builtins: HashSet<String> = [
            "getattr",
            "setattr",
            "type",
            "object",
            "vars",
            "globals",
            "eval",
            "exec",
            "len",
            "open",
            "__import__",
            "__build_class__",
            "id",
            "super",
            "print",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        classify(&code, &builtins)
    }

    #[test]
    fn plain_arithmetic_is_pure() {
        check("def run(a, b):\n    return a * b + len([a, b])\n").unwrap();
        check("import math\ndef run(x):\n    return math.floor(math.sqrt(x))\n").unwrap();
        check(
            "from fractions import Fraction\nfrom collections import Counter\n\
             def run(xs):\n    c = Counter(xs)\n    total = sum(Fraction(v) for v in xs)\n    \
             return {'top': c.most_common(1), 'n': total.numerator}\n",
        )
        .unwrap();
        check(
            "import re, json\ndef helper(s):\n    return [int(m) for m in re.findall(r'\\d+', s)]\n\
             def run(text):\n    print('debug', text)\n    return json.loads(json.dumps(helper(text)))\n",
        )
        .unwrap();
        check("def run(n):\n    try:\n        return 1 // n\n    except ZeroDivisionError as e:\n        return str(e.args)\n").unwrap();
        check("def run(question: str, n: int = 3) -> dict:\n    return {'q': question, 'n': -n, 'l': list((1, 2))}\n").unwrap();
        check("def run(x):\n    match x:\n        case [a, b]:\n            return a\n        case {'k': v}:\n            return v\n    return f'{x!r:>10}'\n").unwrap();
    }

    #[test]
    fn tampering_is_impure() {
        assert_eq!(check("import math\nmath.pi = 3\n"), Err(Impurity::AttributeStore("pi".into())));
        assert_eq!(check("import decimal\n"), Err(Impurity::Import("decimal".into())));
        assert_eq!(
            check("def run():\n    return len.__self__\n"),
            Err(Impurity::Attribute("__self__".into()))
        );
        assert_eq!(
            check("def run():\n    return getattr(len, 'x')\n"),
            Err(Impurity::Builtin("getattr".into()))
        );
        assert_eq!(check("class A:\n    pass\n"), Err(Impurity::Class));
        assert_eq!(check("from math import *\n"), Err(Impurity::ImportStar));
        assert_eq!(check("__builtins__ = {}\n"), Err(Impurity::DunderName("__builtins__".into())));
        assert_eq!(
            check("import json\njson._default_encoder\n"),
            Err(Impurity::Attribute("_default_encoder".into()))
        );
        assert_eq!(check("import os\n"), Err(Impurity::Import("os".into())));
        assert_eq!(check("import collections.abc\n"), Err(Impurity::Import("collections.abc".into())));
        assert_eq!(
            check("def run():\n    return ().__class__.__base__.__subclasses__()\n"),
            Err(Impurity::Attribute("__class__".into()))
        );
        // A conditional store does not make the builtin name safe to load.
        assert_eq!(
            check("if False:\n    setattr = 1\nsetattr(1, 'a', 2)\n"),
            Err(Impurity::Builtin("setattr".into()))
        );
        assert_eq!(
            check(
                "import json\ndef run(e):\n    match e:\n        case ValueError(__traceback__=tb):\n            return tb\n"
            ),
            Err(Impurity::ClassPattern)
        );
        assert_eq!(check("type Alias = list[int]\n"), Err(Impurity::TypeParams));
        assert_eq!(check("def first[T](xs: list[T]) -> T:\n    return xs[0]\n"), Err(Impurity::TypeParams));
        // Nested functions and lambdas are checked too.
        assert_eq!(
            check("def run():\n    f = lambda: eval('1')\n    return f()\n"),
            Err(Impurity::Builtin("eval".into()))
        );
    }
}
