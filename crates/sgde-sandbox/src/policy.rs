//! What a step may use: the module allow-list, the trimmed builtins, and the names the
//! fast path trusts.
//!
//! Everything here is data, kept in one place so that a reviewer can audit the sandbox's
//! surface without reading the machinery. Three layers use it:
//!
//! 1. **Registration** ([`NATIVE_MODULES`], [`frozen_module_allowed`]): the interpreter is
//!    built with only these native and frozen modules. A module that is not registered does
//!    not exist in the worker at all, whatever Python-level trick a step plays (the importlib
//!    internals are reachable from Python, so a Python-level import hook is not a boundary).
//!    RustPython is compiled without its `host_env` feature, so `posix`, `_socket`,
//!    `_ctypes`, `FileIO`, `_signal`, `mmap`, ... are not even in the binary.
//! 2. **Import policy** ([`USER_MODULES`]): of the registered modules, user code may import
//!    only these (and their already-loaded submodules).
//! 3. **Fast-path trust** ([`SAFE_BUILTINS`], [`SAFE_ATTRS`], [`FAST_MODULES`]): code that
//!    only uses these names cannot reach shared interpreter state to mutate it, so it may run
//!    in the warm interpreter; all other code runs in a throw-away fork (see
//!    `purity.rs`). These lists must only ever name things that neither mutate shared
//!    state nor hand out a reference to shared mutable state.

/// Modules a step may `import`. Submodules of these are importable when the interpreter
/// preloaded them (e.g. `collections.abc`, `json.decoder`).
pub const USER_MODULES: &[&str] =
    &["math", "json", "re", "decimal", "fractions", "statistics", "itertools", "functools", "collections"];

/// Modules imported once when a worker starts, before the sandbox is sealed. Covers
/// [`USER_MODULES`] and the submodules a step may name directly.
pub const PRELOAD: &[&str] = &[
    "math",
    "json",
    "re",
    "decimal",
    "fractions",
    "statistics",
    "itertools",
    "functools",
    "collections",
    "collections.abc",
    "heapq",
];

/// Native (Rust) modules kept in the interpreter's module table; every other entry, from
/// RustPython's core (`gc`, `marshal`, `time`, `atexit`, `_symtable`, `_sysconfig`, ...) or
/// from rustpython-stdlib (`_random`, `zlib`, `_hashlib`, `pyexpat`, ...), is removed before
/// the VM initialises. The list is the closure the allowed modules need, found by importing
/// them with everything registered and reading `sys.modules`.
pub const NATIVE_MODULES: &[&str] = &[
    // Needed by the VM's own initialisation and import machinery.
    "_abc",
    "_ast",
    "_codecs",
    "_imp",
    "_io",
    "_typing",
    "_types",
    "_warnings",
    "_weakref",
    // Needed by the allowed modules.
    "_bisect",
    "_collections",
    "_contextvars",
    "_functools",
    "_json",
    "_operator",
    "_sre",
    "_statistics",
    "_string",
    "_struct",
    "itertools",
    "math",
];

/// Frozen (pure Python) stdlib modules kept, by exact name. `random` is deliberately absent:
/// the worker installs a stub (see [`RANDOM_STUB`]). `os` is absent: nothing allowed needs it
/// once `random` is stubbed.
const FROZEN_MODULES: &[&str] = &[
    // VM core.
    "_frozen_importlib",
    "_thread",
    "codecs",
    "copyreg",
    "encodings",
    // Allowed modules and what they import.
    "_collections_abc",
    "_pycodecs",
    "_py_warnings",
    "_pydecimal",
    "abc",
    "bisect",
    "collections",
    "collections.abc",
    "collections._defaultdict",
    "contextvars",
    "decimal",
    "enum",
    "fractions",
    "functools",
    "heapq",
    "json",
    "json.decoder",
    "json.encoder",
    "json.scanner",
    "keyword",
    "locale",
    "numbers",
    "operator",
    "re",
    "reprlib",
    "statistics",
    "types",
    "warnings",
];

/// Frozen package prefixes kept whole: codecs are looked up lazily by name, and `re` is split
/// into private submodules.
const FROZEN_PREFIXES: &[&str] = &["encodings.", "re."];

/// Whether the frozen module `name` is registered in the sandbox interpreter.
pub fn frozen_module_allowed(name: &str) -> bool {
    FROZEN_MODULES.contains(&name) || FROZEN_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Modules the runtime imports on a step's behalf from native code (a codec lookup such as
/// `'x'.encode('utf-16')` loads `encodings.utf_16`, which needs `_pycodecs`). There is no
/// standard-library frame to recognise such an import by, so they are allowed for everyone;
/// all are pure codec machinery.
const RUNTIME_MODULES: &[&str] = &["encodings", "_pycodecs", "warnings", "_py_warnings"];

/// Whether user code may import `name` (an absolute dotted name).
pub fn user_import_allowed(name: &str) -> bool {
    let top = name.split('.').next().unwrap_or(name);
    USER_MODULES.contains(&top) || RUNTIME_MODULES.contains(&top)
}

/// Builtins deleted from the interpreter's `builtins` module when it is sealed: host access
/// (`open`, `input`) or interactive helpers that would reach for host modules.
pub const REMOVED_BUILTINS: &[&str] =
    &["open", "input", "breakpoint", "help", "exit", "quit", "copyright", "credits", "license"];

/// Source of the `random` module the sandbox installs. `statistics` imports `random` (for
/// `NormalDist.samples` and `kde_random`); the real module seeds itself from the operating
/// system, which a deterministic step must not see. The stub keeps `statistics` importable
/// and makes any use of randomness a clear error.
pub const RANDOM_STUB: &str = r#"
"""Randomness is not available in an sgde sandbox step: steps must be deterministic."""

def _unavailable(*args, **kwargs):
    raise NotImplementedError("random numbers are not available in the sandbox (steps must be deterministic)")

random = _unavailable
seed = _unavailable
choice = _unavailable
randint = _unavailable
shuffle = _unavailable
sample = _unavailable
uniform = _unavailable
gauss = _unavailable

class Random:
    def __init__(self, *args, **kwargs):
        _unavailable()
"#;

/// Modules whose (whitelisted) attributes fast-path code may use after importing them.
/// `decimal` is not here: its context is shared, thread-wide mutable state.
pub const FAST_MODULES: &[&str] =
    &["math", "json", "re", "fractions", "statistics", "itertools", "functools", "collections"];

/// Builtins fast-path code may name. None of them mutates shared state or returns a
/// reference to it. Excluded on purpose: `getattr`/`setattr`/`delattr`/`vars`/`globals`/
/// `locals`/`dir`, `eval`/`exec`/`compile`, `type`/`object`/`super`, `__import__`,
/// `__build_class__` (class statements), `id` (address-dependent), `memoryview`.
pub const SAFE_BUILTINS: &[&str] = &[
    "abs",
    "all",
    "any",
    "ascii",
    "bin",
    "bool",
    "bytearray",
    "bytes",
    "callable",
    "chr",
    "complex",
    "dict",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "format",
    "frozenset",
    "hash",
    "hex",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "oct",
    "ord",
    "pow",
    "print",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "str",
    "sum",
    "tuple",
    "zip",
    "None",
    "True",
    "False",
    "Ellipsis",
    "NotImplemented",
    // Exceptions (classes are immutable builtins; raising and catching is local).
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "BaseException",
    "Exception",
    "IndexError",
    "KeyError",
    "LookupError",
    "NameError",
    "NotImplementedError",
    "OverflowError",
    "RecursionError",
    "RuntimeError",
    "StopIteration",
    "TypeError",
    "UnicodeError",
    "ValueError",
    "ZeroDivisionError",
];

/// Attribute and imported names fast-path code may use: methods of the builtin value types
/// and the public API of [`FAST_MODULES`]. The check is by name, whatever the object, so a
/// name belongs here only if, on every object reachable through these names from the fast
/// modules, it neither mutates shared state nor returns shared mutable state. No name starting
/// with `_` is allowed (that rules out every dunder route: `__globals__`, `__class__`,
/// `__subclasses__`, `__dict__`, `__self__`, ...).
pub const SAFE_ATTRS: &[&str] = &[
    // str
    "capitalize",
    "casefold",
    "center",
    "count",
    "encode",
    "endswith",
    "expandtabs",
    "find",
    "format",
    "index",
    "isalnum",
    "isalpha",
    "isascii",
    "isdecimal",
    "isdigit",
    "isidentifier",
    "islower",
    "isnumeric",
    "isprintable",
    "isspace",
    "istitle",
    "isupper",
    "join",
    "ljust",
    "lower",
    "lstrip",
    "partition",
    "removeprefix",
    "removesuffix",
    "replace",
    "rfind",
    "rindex",
    "rjust",
    "rpartition",
    "rsplit",
    "rstrip",
    "split",
    "splitlines",
    "startswith",
    "strip",
    "swapcase",
    "title",
    "upper",
    "zfill",
    "decode",
    "hex",
    "fromhex",
    "translate",
    "maketrans",
    "format_map",
    // list / dict / set / deque / Counter (mutators are safe: no shared container is
    // reachable through the other names in this list)
    "append",
    "appendleft",
    "clear",
    "copy",
    "difference",
    "difference_update",
    "discard",
    "elements",
    "extend",
    "extendleft",
    "fromkeys",
    "get",
    "insert",
    "intersection",
    "intersection_update",
    "isdisjoint",
    "issubset",
    "issuperset",
    "items",
    "keys",
    "maxlen",
    "most_common",
    "move_to_end",
    "pop",
    "popitem",
    "popleft",
    "remove",
    "reverse",
    "rotate",
    "setdefault",
    "sort",
    "subtract",
    "symmetric_difference",
    "symmetric_difference_update",
    "total",
    "union",
    "update",
    "values",
    "add",
    "args",
    // numbers
    "as_integer_ratio",
    "bit_count",
    "bit_length",
    "to_bytes",
    "from_bytes",
    "conjugate",
    "denominator",
    "imag",
    "is_integer",
    "limit_denominator",
    "numerator",
    "real",
    // math
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "cbrt",
    "ceil",
    "comb",
    "copysign",
    "cos",
    "cosh",
    "degrees",
    "dist",
    "e",
    "erf",
    "erfc",
    "exp",
    "exp2",
    "expm1",
    "fabs",
    "factorial",
    "floor",
    "fma",
    "fmod",
    "frexp",
    "fsum",
    "gamma",
    "gcd",
    "hypot",
    "inf",
    "isclose",
    "isfinite",
    "isinf",
    "isnan",
    "isqrt",
    "lcm",
    "ldexp",
    "lgamma",
    "log",
    "log10",
    "log1p",
    "log2",
    "modf",
    "nan",
    "nextafter",
    "perm",
    "pi",
    "prod",
    "radians",
    "remainder",
    "sin",
    "sinh",
    "sqrt",
    "sumprod",
    "tan",
    "tanh",
    "tau",
    "trunc",
    "ulp",
    // itertools
    "accumulate",
    "batched",
    "chain",
    "combinations",
    "combinations_with_replacement",
    "compress",
    "cycle",
    "dropwhile",
    "filterfalse",
    "from_iterable",
    "groupby",
    "islice",
    "pairwise",
    "permutations",
    "product",
    "repeat",
    "starmap",
    "takewhile",
    "tee",
    "zip_longest",
    // functools
    "cache",
    "cmp_to_key",
    "lru_cache",
    "partial",
    "reduce",
    // fractions / statistics
    "Fraction",
    "StatisticsError",
    "correlation",
    "covariance",
    "fmean",
    "geometric_mean",
    "harmonic_mean",
    "linear_regression",
    "mean",
    "median",
    "median_grouped",
    "median_high",
    "median_low",
    "mode",
    "multimode",
    "pstdev",
    "pvariance",
    "quantiles",
    "stdev",
    "variance",
    "slope",
    "intercept",
    // collections
    "ChainMap",
    "Counter",
    "OrderedDict",
    "defaultdict",
    "deque",
    "namedtuple",
    "default_factory",
    // re (module functions, flags, Pattern and Match methods)
    "compile",
    "search",
    "match",
    "fullmatch",
    "findall",
    "finditer",
    "sub",
    "subn",
    "escape",
    "IGNORECASE",
    "I",
    "MULTILINE",
    "M",
    "DOTALL",
    "S",
    "VERBOSE",
    "X",
    "ASCII",
    "A",
    "group",
    "groups",
    "groupdict",
    "start",
    "end",
    "span",
    "expand",
    "lastindex",
    "lastgroup",
    "pattern",
    "flags",
    "string",
    // json
    "loads",
    "dumps",
    "JSONDecodeError",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_underscore_names_are_trusted() {
        for name in SAFE_ATTRS.iter().chain(SAFE_BUILTINS) {
            assert!(!name.starts_with('_'), "{name} must not be trusted");
        }
    }

    #[test]
    fn fast_modules_are_user_modules_without_decimal() {
        for m in FAST_MODULES {
            assert!(USER_MODULES.contains(m));
        }
        assert!(!FAST_MODULES.contains(&"decimal"));
    }

    #[test]
    fn dangerous_names_are_not_trusted() {
        for name in [
            "getattr",
            "setattr",
            "delattr",
            "vars",
            "globals",
            "locals",
            "eval",
            "exec",
            "type",
            "object",
            "super",
            "open",
            "id",
            "getcontext",
            "DefaultContext",
            "random",
            "NormalDist",
            "register",
            "copyreg",
            "decoder",
            "abc",
        ] {
            assert!(
                !SAFE_ATTRS.contains(&name) && !SAFE_BUILTINS.contains(&name),
                "{name} must not be trusted"
            );
        }
    }

    #[test]
    fn import_policy() {
        assert!(user_import_allowed("math"));
        assert!(user_import_allowed("collections.abc"));
        assert!(!user_import_allowed("os"));
        assert!(!user_import_allowed("sys"));
        assert!(!user_import_allowed("mathx"));
        assert!(frozen_module_allowed("encodings.utf_8"));
        assert!(frozen_module_allowed("re._parser"));
        assert!(!frozen_module_allowed("os"));
        assert!(!frozen_module_allowed("random"));
        assert!(!frozen_module_allowed("_frozen_importlib_external"));
    }
}
