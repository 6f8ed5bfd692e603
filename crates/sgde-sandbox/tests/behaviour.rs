//! What a step sees and returns: the JSON bridge, errors with lines, print capture,
//! determinism, and no state carried from one call into the next.

mod common;

use common::*;
use serde_json::json;
use sgde_sandbox::{CallRequest, SandboxError};

#[tokio::test]
async fn arguments_and_results_cross_the_json_bridge() {
    let sb = sandbox(1).await;
    let code = "def run(n, x, s, flag, nothing, items, obj):\n    return {'n': n + 1, 'x': x * 2, 's': s.upper(), 'flag': not flag,\n            'nothing': nothing is None, 'items': items[::-1], 'keys': list(obj),\n            'tuple': (1, 2), 'nested': [[{'a': (True, None)}]]}\n";
    let args = json!({"n": 41, "x": 1.25, "s": "abc", "flag": false, "nothing": null,
                      "items": [1, "two", 3.0], "obj": {"z": 1, "a": 2}});
    let out = run(&sb, code, args).await.unwrap();
    assert_eq!(
        out.value,
        json!({"n": 42, "x": 2.5, "s": "ABC", "flag": true, "nothing": true,
               "items": [3.0, "two", 1], "keys": ["z", "a"], "tuple": [1, 2],
               "nested": [[{"a": [true, null]}]]})
    );
    assert!(!out.forked, "plain code runs on the fast path");
}

#[tokio::test]
async fn big_ints_within_64_bits_pass_and_larger_ones_are_refused() {
    let sb = sandbox(1).await;
    assert_eq!(
        value(&sb, "def run():\n    return [2**63 - 1, -2**63, 2**64 - 1]\n").await,
        json!([9223372036854775807i64, -9223372036854775808i64, 18446744073709551615u64])
    );
    let err = error(&sb, "def run():\n    return {'big': [2**64]}\n").await;
    let SandboxError::NotJson { message } = err else { panic!("{err:?}") };
    assert!(message.starts_with("$.big[0]: int (65 bits) does not fit in 64 bits"), "{message}");
    assert!(message.contains("str(x)"), "{message}");
    assert_eq!(
        value(&sb, "def run():\n    return str(2**100)\n").await,
        json!("1267650600228229401496703205376")
    );
}

#[tokio::test]
async fn non_json_values_are_refused_with_the_type_and_path() {
    let sb = sandbox(1).await;
    let cases = [
        ("{1, 2}", "$: a value of type set is not JSON"),
        ("{'a': [b'x']}", "$.a[0]: a value of type bytes is not JSON"),
        ("float('nan')", "$: float nan is not valid JSON"),
        ("[float('inf')]", "$[0]: float inf is not valid JSON"),
        ("{1: 'one'}", "$: dict key 1 (int) is not a string"),
        ("{'k': frozenset()}", "$.k: a value of type frozenset is not JSON"),
        ("(x for x in [])", "$: a value of type generator is not JSON"),
        ("1j", "$: a value of type complex is not JSON"),
        ("len", "$: a value of type builtin_function_or_method is not JSON"),
    ];
    for (expr, expected) in cases {
        let code = format!("def run():\n    return {expr}\n");
        match error(&sb, &code).await {
            SandboxError::NotJson { message } => {
                assert!(message.starts_with(expected), "{expr}: {message}")
            }
            other => panic!("{expr}: expected NotJson, got {other:?}"),
        }
    }
    let code = "from fractions import Fraction\ndef run():\n    return {'r': Fraction(1, 3)}\n";
    let SandboxError::NotJson { message } = error(&sb, code).await else { panic!() };
    assert!(message.starts_with("$.r: a value of type Fraction is not JSON; return float(x)"), "{message}");
    let code = "def run():\n    x = []\n    x.append(x)\n    return x\n";
    let SandboxError::NotJson { message } = error(&sb, code).await else { panic!() };
    assert!(message.contains("nested deeper than"), "{message}");
}

#[tokio::test]
async fn subclasses_of_json_types_convert() {
    let sb = sandbox(1).await;
    let code = "from collections import Counter, OrderedDict, namedtuple\nimport re\ndef run():\n    P = namedtuple('P', 'x y')\n    return [Counter('abca'), OrderedDict(b=1, a=2), P(1, 2), re.IGNORECASE, True]\n";
    assert_eq!(value(&sb, code).await, json!([{"a": 2, "b": 1, "c": 1}, {"b": 1, "a": 2}, [1, 2], 2, true]));
}

#[tokio::test]
async fn user_errors_carry_type_message_and_line() {
    let sb = sandbox(1).await;
    let code = "import json\n\ndef helper(d):\n    return d['missing']\n\ndef run():\n    x = 1\n    return helper({})\n";
    assert_eq!(
        error(&sb, code).await,
        SandboxError::User { exc_type: "KeyError".into(), message: "'missing'".into(), line: Some(4) }
    );
    let code = "def run(x):\n    if x < 0:\n        raise ValueError(f'negative: {x}')\n    return x\n";
    let err = run(&sb, code, json!({"x": -3})).await.unwrap_err();
    assert_eq!(
        err,
        SandboxError::User { exc_type: "ValueError".into(), message: "negative: -3".into(), line: Some(3) }
    );
    // Errors at module level point at their line too.
    let err = error(&sb, "x = 1\ny = undefined_name\ndef run():\n    return 1\n").await;
    assert_eq!(
        err,
        SandboxError::User {
            exc_type: "NameError".into(),
            message: "name 'undefined_name' is not defined".into(),
            line: Some(2)
        }
    );
    // Wrong arguments are a TypeError.
    let err = run(&sb, "def run(a):\n    return a\n", json!({"b": 1})).await.unwrap_err();
    assert!(matches!(&err, SandboxError::User { exc_type, .. } if exc_type == "TypeError"), "{err:?}");
    // Errors inside a fork carry the same detail.
    let code = "import decimal\ndef run():\n    return decimal.Decimal(1) / 0\n";
    let err = error(&sb, code).await;
    assert!(
        matches!(&err, SandboxError::User { exc_type, line: Some(3), .. } if exc_type == "DivisionByZero"),
        "{err:?}"
    );
}

#[tokio::test]
async fn compile_errors_and_missing_functions() {
    let sb = sandbox(1).await;
    let err = error(&sb, "def run(:\n    return 1\n").await;
    assert!(matches!(err, SandboxError::Compile { line: Some(1), .. }), "{err:?}");
    let err = error(&sb, "x = 1\n\nif x\n").await;
    assert!(matches!(err, SandboxError::Compile { line: Some(3), .. }), "{err:?}");
    assert_eq!(
        error(&sb, "def main():\n    return 1\n").await,
        SandboxError::MissingFunction { function: "run".into() }
    );
    assert_eq!(error(&sb, "run = 5\n").await, SandboxError::MissingFunction { function: "run".into() });
    let mut request = CallRequest::new("def solve():\n    return 7\n", Default::default());
    request.function = "solve".into();
    assert_eq!(sb.call(request.clone()).await.unwrap().value, json!(7));
    request.function = "not a name".into();
    assert!(matches!(sb.call(request).await, Err(SandboxError::InvalidRequest { .. })));
}

#[tokio::test]
async fn allowed_modules_work() {
    let sb = sandbox(1).await;
    let code = r#"
import math, json, re, decimal, fractions, statistics, itertools, functools, collections
from collections.abc import Mapping

def run():
    return {
        'math': math.isqrt(10**6) + math.floor(math.pi),
        'json': json.loads(json.dumps({'a': [1, 2]})),
        're': re.findall(r'\d+', 'a1b22c333'),
        'decimal': str(decimal.Decimal('1.10') + decimal.Decimal('2.20')),
        'fractions': str(fractions.Fraction(3, 4) + fractions.Fraction(1, 4)),
        'statistics': [statistics.mean([1, 2, 3, 4]), statistics.median([3, 1, 2])],
        'itertools': list(itertools.accumulate([1, 2, 3])),
        'functools': functools.reduce(lambda a, b: a * b, range(1, 6)),
        'collections': collections.Counter('hello').most_common(1),
        'abc': isinstance({}, Mapping),
    }
"#;
    assert_eq!(
        value(&sb, code).await,
        json!({"math": 1003, "json": {"a": [1, 2]}, "re": ["1", "22", "333"], "decimal": "3.30",
               "fractions": "1", "statistics": [2.5, 2], "itertools": [1, 3, 6],
               "functools": 120, "collections": [["l", 2]], "abc": true})
    );
    let err =
        error(&sb, "import statistics\ndef run():\n    return statistics.NormalDist().samples(1)\n").await;
    assert!(
        matches!(&err, SandboxError::User { exc_type, .. } if exc_type == "NotImplementedError"),
        "randomness is unavailable: {err:?}"
    );
}

#[tokio::test]
async fn same_code_same_inputs_same_output_across_workers() {
    let code = "def run(words):\n    s = set(words)\n    d = {w: hash(w) % 1000 for w in s}\n    return [list(s), d, repr(frozenset(words))]\n";
    let args = json!({"words": ["pear", "apple", "fig", "kiwi", "plum", "date", "lime"]});
    let first = sandbox(2).await;
    let second = sandbox(1).await;
    let expected = run(&first, code, args.clone()).await.unwrap().value;
    for _ in 0..4 {
        assert_eq!(run(&first, code, args.clone()).await.unwrap().value, expected);
    }
    assert_eq!(run(&second, code, args).await.unwrap().value, expected, "a fresh pool agrees");
}

/// Each pair: code that tampers with shared state, then code that must see pristine state.
#[tokio::test]
async fn no_state_leaks_into_the_next_call() {
    let sb = sandbox(1).await;
    let pairs = [
        (
            "import math\ndef run():\n    math.pi = 3\n    return math.pi\n",
            "import math\ndef run():\n    return math.pi\n",
            json!(std::f64::consts::PI),
        ),
        (
            "import json\ndef run():\n    json._default_encoder.indent = 4\n    return 0\n",
            "import json\ndef run():\n    return json.dumps([1, 2])\n",
            json!("[1, 2]"),
        ),
        (
            "import decimal\ndef run():\n    decimal.getcontext().prec = 3\n    return 0\n",
            "import decimal\ndef run():\n    return str(decimal.Decimal(1) / decimal.Decimal(7))\n",
            json!("0.1428571428571428571428571429"),
        ),
        (
            "import collections\ndef run():\n    collections._sys.modules['math'] = collections\n    return 0\n",
            "import math\ndef run():\n    return math.sqrt(16)\n",
            json!(4.0),
        ),
        (
            "def run():\n    __builtins__.len = lambda x: -1\n    return 0\n",
            "def run():\n    return len('abc')\n",
            json!(3),
        ),
        (
            "import collections.abc\ndef run():\n    collections.abc.Sequence.register(dict)\n    return 0\n",
            "import collections.abc\ndef run():\n    return isinstance({}, collections.abc.Sequence)\n",
            json!(false),
        ),
        (
            "import functools\ndef run():\n    functools.reduce = lambda *a: 'hijacked'\n    return 0\n",
            "import functools\ndef run():\n    return functools.reduce(lambda a, b: a + b, [1, 2, 3])\n",
            json!(6),
        ),
    ];
    for (tamper, check, expected) in pairs {
        run(&sb, tamper, json!({})).await.unwrap_or_else(|e| panic!("{tamper}: {e}"));
        assert_eq!(value(&sb, check).await, expected, "after:\n{tamper}");
    }
    // Module-level state of one call is not visible to the next.
    let code = "try:\n    counter\nexcept NameError:\n    counter = 0\ncounter += 1\ndef run():\n    return counter\n";
    for _ in 0..3 {
        assert_eq!(value(&sb, code).await, json!(1));
    }
    let code = "cache = []\ndef run(x):\n    cache.append(x)\n    return len(cache)\n";
    for i in 0..3 {
        assert_eq!(run(&sb, code, json!({"x": i})).await.unwrap().value, json!(1));
    }
}

#[tokio::test]
async fn print_is_captured_per_call() {
    let sb = sandbox(1).await;
    let out = run(
        &sb,
        "def run(name):\n    print('hello', name)\n    print(1, 2, sep='-', end='!')\n    return 0\n",
        json!({"name": "world"}),
    )
    .await
    .unwrap();
    assert_eq!(out.stdout, "hello world\n1-2!");
    let out = run(&sb, "def run():\n    return 1\n", json!({})).await.unwrap();
    assert_eq!(out.stdout, "", "nothing carried over from the previous call");
    let out =
        run(&sb, "import decimal\ndef run():\n    print('forked')\n    return 1\n", json!({})).await.unwrap();
    assert!(out.forked);
    assert_eq!(out.stdout, "forked\n");
}
