//! Building the sealed interpreter a worker runs steps in.
//!
//! Order matters:
//!
//! 1. **Register** only the allowed native and frozen modules ([`crate::policy`]). RustPython
//!    always adds its core modules (`gc`, `marshal`, `time`, ...); an init hook deletes them
//!    from the module table before the VM initialises, so not even `_imp.create_builtin` can
//!    bring them back.
//! 2. **Preload** the allowed modules (with a stub `random`), so that a call never pays for
//!    an import and every worker starts from the same state.
//! 3. **Seal**: replace `builtins.__import__` with a guard that lets user code import only the
//!    allowed modules, delete host-facing builtins (`open`, `input`, ...), and route `print`
//!    into a bounded, per-call capture.
//!
//! The interpreter uses a fixed hash seed, so `str` hashing (and with it set iteration
//! order) is the same in every worker and every run.

use std::{cell::RefCell, collections::HashSet, rc::Rc};

use rustpython_vm::{
    AsObject, Interpreter, PyObjectRef, PyResult, Settings, VirtualMachine,
    builtins::{PyBaseExceptionRef, PyDictRef, PyStrRef, PyTypeRef},
    common::rc::PyRc,
    function::FuncArgs,
    scope::Scope,
};

use crate::policy::{
    NATIVE_MODULES, PRELOAD, RANDOM_STUB, REMOVED_BUILTINS, USER_MODULES, frozen_module_allowed,
    user_import_allowed,
};

/// The file name user code is compiled under; tracebacks are matched against it to find the
/// line in the step's own source.
pub(crate) const STEP_FILENAME: &str = "<step>";

/// A RustPython interpreter with the allowed modules loaded and the sandbox sealed.
pub(crate) struct SealedInterpreter {
    interp: Interpreter,
    /// Names defined in `builtins` after sealing (input to the purity check).
    pub builtin_names: HashSet<String>,
    /// Raised by `print` once the per-call stdout limit is exceeded.
    pub output_limit_exc: PyTypeRef,
    stdout: PyObjectRef,
}

impl SealedInterpreter {
    /// Builds, preloads and seals an interpreter. Errors describe what failed; they mean the
    /// worker cannot serve and should exit.
    pub fn build() -> Result<Self, String> {
        let mut settings = Settings::default();
        settings.hash_seed = Some(0);
        settings.install_signal_handlers = false;
        settings.isolated = true;
        settings.ignore_environment = true;
        settings.import_site = false;
        settings.user_site_directory = false;
        settings.allow_external_library = false;
        settings.safe_path = true;
        settings.path_list = Vec::new();

        let trimmed = Rc::new(std::cell::Cell::new(false));
        let trimmed_in_hook = trimmed.clone();
        let builder = Interpreter::builder(settings);
        let native: Vec<_> = rustpython_stdlib::stdlib_module_defs(&builder.ctx)
            .into_iter()
            .filter(|def| NATIVE_MODULES.contains(&def.name.as_str()))
            .collect();
        let frozen =
            rustpython_pylib::FROZEN_STDLIB.into_iter().filter(|(name, _)| frozen_module_allowed(name));
        let interp = builder
            .add_native_modules(&native)
            .add_frozen_modules(frozen)
            .init_hook(move |vm| {
                // Runs before VM initialisation, while the global state is not yet shared.
                if let Some(state) = PyRc::get_mut(&mut vm.state) {
                    state.module_defs.retain(|name, _| NATIVE_MODULES.contains(name));
                    state.frozen.retain(|name, _| frozen_module_allowed(name));
                    trimmed_in_hook.set(true);
                }
            })
            .build();
        if !trimmed.get() {
            return Err("could not trim the interpreter's module table".into());
        }

        interp.enter(assert_no_host_access)?;
        let sealed = interp.enter(|vm| seal(vm).map_err(|exc| describe(vm, exc)))?;
        let (builtin_names, output_limit_exc, stdout) = sealed;
        Ok(Self { interp, builtin_names, output_limit_exc, stdout })
    }

    /// Runs `f` inside the interpreter.
    pub fn enter<R>(&self, f: impl FnOnce(&VirtualMachine) -> R) -> R {
        self.interp.enter(f)
    }

    /// Points `sys.stdout` at the capture (for the duration of a call) or at `None`.
    pub fn route_stdout(&self, vm: &VirtualMachine, capture: bool) -> PyResult<()> {
        let target = if capture { self.stdout.clone() } else { vm.ctx.none() };
        vm.sys_module.set_attr("stdout", target, vm)
    }
}

type Sealed = (HashSet<String>, PyTypeRef, PyObjectRef);

/// Refuses to serve from an interpreter built with RustPython's `host_env` feature (which
/// Cargo's feature unification could switch on if any crate in the build asks for it):
/// with it, `_io.FileIO` opens host files.
fn assert_no_host_access(vm: &VirtualMachine) -> Result<(), String> {
    let io = vm.import("_io", 0).map_err(|exc| describe(vm, exc))?;
    if io.get_attr("FileIO", vm).is_ok() {
        return Err("RustPython was built with host access (the `host_env` feature); \
                    the sandbox refuses to run"
            .into());
    }
    Ok(())
}

fn seal(vm: &VirtualMachine) -> PyResult<Sealed> {
    install_random_stub(vm)?;
    for name in PRELOAD {
        vm.import(*name, 0)?;
    }

    let original_import = vm.builtins.get_attr("__import__", vm)?;
    let guard = import_guard(vm, original_import);
    vm.builtins.set_attr("__import__", guard, vm)?;

    let builtins_dict = vm.builtins.dict();
    for name in REMOVED_BUILTINS {
        if builtins_dict.get_item_opt(*name, vm)?.is_some() {
            builtins_dict.del_item(*name, vm)?;
        }
    }

    let output_limit_exc = vm.ctx.new_exception_type(
        "sandbox",
        "OutputLimitExceeded",
        Some(vec![vm.ctx.exceptions.base_exception_type.to_owned()]),
    );
    let stdout = capture_object(vm, output_limit_exc.clone());
    vm.sys_module.set_attr("stdout", vm.ctx.none(), vm)?;
    vm.sys_module.set_attr("stderr", vm.ctx.none(), vm)?;
    vm.sys_module.set_attr("stdin", vm.ctx.none(), vm)?;

    let builtin_names = builtins_dict
        .keys_vec()
        .into_iter()
        .filter_map(|key| key.str(vm).ok().map(|s| s.to_string()))
        .collect();
    Ok((builtin_names, output_limit_exc, stdout))
}

fn install_random_stub(vm: &VirtualMachine) -> PyResult<()> {
    let dict = vm.ctx.new_dict();
    let module = vm.new_module("random", dict.clone(), None);
    let scope = Scope::with_builtins(None, dict, vm);
    vm.run_string(scope, RANDOM_STUB, "<sandbox random stub>".into())?;
    vm.sys_module.get_attr("modules", vm)?.set_item("random", module.into(), vm)
}

/// Builds the `__import__` replacement. User code may import [`USER_MODULES`]; a module of
/// the sealed standard library importing lazily may import anything registered. "Who is
/// importing" is read from the calling frame's globals, not from the `globals` argument a
/// caller could forge: a module's own functions run with that module's `__dict__` as
/// globals, a step with its fresh dict. What is registered is the real boundary; this guard
/// keeps the step's view to the documented allow-list.
fn import_guard(vm: &VirtualMachine, original: PyObjectRef) -> PyObjectRef {
    vm.new_function("__import__", move |args: FuncArgs, vm: &VirtualMachine| -> PyResult {
        let name: PyStrRef = args
            .args
            .first()
            .cloned()
            .ok_or_else(|| vm.new_type_error("__import__() missing required argument 'name'"))?
            .try_into_value(vm)?;
        let level = match args.args.get(4).or_else(|| args.kwargs.get("level")) {
            Some(level) => level.try_to_value::<usize>(vm)?,
            None => 0,
        };
        let trusted = vm.current_frame().is_some_and(|frame| is_stdlib_globals(&frame.globals, vm));
        if !trusted {
            let requested = name.to_string_lossy();
            let requested = requested.as_ref();
            if level != 0 {
                return Err(
                    vm.new_import_error("relative imports are not available in the sandbox", name.clone())
                );
            }
            if !user_import_allowed(requested) {
                return Err(vm.new_import_error(
                    format!(
                        "import of '{requested}' is not allowed in the sandbox; allowed modules: {}",
                        USER_MODULES.join(", ")
                    ),
                    name.clone(),
                ));
            }
        }
        original.call(args, vm)
    })
    .into()
}

/// Whether `globals` is the `__dict__` of a loaded module (the import comes from the
/// standard library, not from a step, whose globals are a fresh dict).
fn is_stdlib_globals(globals: &PyDictRef, vm: &VirtualMachine) -> bool {
    let Ok(Some(name)) = globals.get_item_opt("__name__", vm) else {
        return false;
    };
    let Ok(modules) = vm.sys_module.get_attr("modules", vm) else {
        return false;
    };
    let Ok(module) = modules.get_item(&*name, vm) else {
        return false;
    };
    module.dict().is_some_and(|dict| dict.is(globals))
}

thread_local! {
    /// The current call's captured stdout. Worker processes are single-threaded.
    static CAPTURE: RefCell<Capture> = const { RefCell::new(Capture::idle()) };
}

struct Capture {
    text: String,
    limit: usize,
    overflowed: bool,
}

impl Capture {
    const fn idle() -> Self {
        Self { text: String::new(), limit: 0, overflowed: false }
    }
}

/// Starts capturing `print` output for a call, with a byte limit.
pub(crate) fn begin_capture(limit: usize) {
    CAPTURE.with_borrow_mut(|c| {
        c.text.clear();
        c.limit = limit;
        c.overflowed = false;
    });
}

/// Ends the capture: the text, and whether the limit was exceeded.
pub(crate) fn end_capture() -> (String, bool) {
    CAPTURE.with_borrow_mut(|c| (std::mem::take(&mut c.text), c.overflowed))
}

/// The object `sys.stdout` points at during a call: a module with native `write` and `flush`.
fn capture_object(vm: &VirtualMachine, limit_exc: PyTypeRef) -> PyObjectRef {
    let dict = vm.ctx.new_dict();
    let module = vm.new_module("sandbox_stdout", dict.clone(), None);
    let write = vm.new_function("write", move |text: PyStrRef, vm: &VirtualMachine| {
        let text = text.to_string_lossy();
        CAPTURE.with_borrow_mut(|c| {
            if c.overflowed || c.text.len() + text.len() > c.limit {
                c.overflowed = true;
                return Err(vm.new_exception_msg(
                    limit_exc.clone(),
                    format!("printed output exceeded {} bytes", c.limit).into(),
                ));
            }
            c.text.push_str(&text);
            Ok(text.chars().count())
        })
    });
    let flush = vm.new_function("flush", || {});
    let _ = dict.set_item("write", write.into(), vm);
    let _ = dict.set_item("flush", flush.into(), vm);
    module.into()
}

/// A one-line description of a Python exception, for start-up failures.
pub(crate) fn describe(vm: &VirtualMachine, exc: PyBaseExceptionRef) -> String {
    let type_name = exc.class().name().to_string();
    let message = exc.as_object().str(vm).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{type_name}: {message}")
}

/// A fresh globals dict for one call.
pub(crate) fn fresh_globals(vm: &VirtualMachine) -> PyResult<PyDictRef> {
    let globals = vm.ctx.new_dict();
    globals.set_item("__builtins__", vm.builtins.clone().into(), vm)?;
    globals.set_item("__name__", vm.ctx.new_str("__step__").into(), vm)?;
    Ok(globals)
}
