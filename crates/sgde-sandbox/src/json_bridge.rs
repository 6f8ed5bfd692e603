//! The JSON bridge: how step inputs become Python values and return values become JSON.
//!
//! JSON and Python do not map one to one, so the rules are fixed here and every refusal says
//! where and what to do instead.
//!
//! **Into Python** (keyword arguments): `null` → `None`, booleans → `bool`, integers → `int`,
//! other numbers → `float`, strings → `str`, arrays → `list`, objects → `dict` (key order
//! kept).
//!
//! **Out of Python** (the return value):
//!
//! | Python | JSON |
//! |---|---|
//! | `None`, `bool`, `str` | `null`, boolean, string |
//! | `int` with −2⁶³ ≤ x < 2⁶⁴ | integer |
//! | larger `int` | **error**: return `str(x)` to keep every digit |
//! | finite `float` | number |
//! | `nan`, `inf`, `-inf` | **error** (not valid JSON) |
//! | `list`, `tuple` (and subclasses such as named tuples) | array |
//! | `dict` (and subclasses such as `Counter`) with `str` keys | object, insertion order kept |
//! | `dict` with a non-`str` key | **error** naming the key |
//! | `set`, `frozenset`, `bytes`, `Fraction`, `Decimal`, `complex`, iterators, any other object | **error** naming the type, with a hint |
//!
//! Subclasses of `int`/`str` (e.g. `IntEnum` members) convert as their base value. Nesting is
//! limited to [`MAX_DEPTH`] levels, which also catches self-referencing containers. The
//! encoded size is bounded while converting (an upper estimate), so a huge value is refused
//! before it is built.

use rustpython_vm::{
    AsObject, PyObject, PyObjectRef, PyResult, VirtualMachine,
    builtins::{PyDict, PyFloat, PyInt, PyList, PyStr, PyTuple},
};
use serde_json::{Map, Number, Value};

/// Deepest nesting of arrays and objects accepted in a return value.
pub const MAX_DEPTH: usize = 256;

/// Why a return value could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BridgeError {
    /// The value (at the given path) is not representable; the message says why.
    NotJson(String),
    /// The encoding would exceed the output limit.
    TooLarge,
}

/// Converts a JSON value into a Python object.
pub(crate) fn to_python(value: &Value, vm: &VirtualMachine) -> PyResult<PyObjectRef> {
    Ok(match value {
        Value::Null => vm.ctx.none(),
        Value::Bool(b) => vm.ctx.new_bool(*b).into(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                vm.ctx.new_int(i).into()
            } else if let Some(u) = n.as_u64() {
                vm.ctx.new_int(u).into()
            } else {
                vm.ctx.new_float(n.as_f64().unwrap_or(f64::NAN)).into()
            }
        }
        Value::String(s) => vm.ctx.new_str(s.as_str()).into(),
        Value::Array(items) => {
            let items = items.iter().map(|item| to_python(item, vm)).collect::<PyResult<Vec<_>>>()?;
            vm.ctx.new_list(items).into()
        }
        Value::Object(map) => {
            let dict = vm.ctx.new_dict();
            for (key, item) in map {
                dict.set_item(key.as_str(), to_python(item, vm)?, vm)?;
            }
            dict.into()
        }
    })
}

/// Converts a Python return value into JSON, refusing it once its encoding would exceed
/// `limit_bytes`.
pub(crate) fn from_python(
    obj: &PyObject,
    vm: &VirtualMachine,
    limit_bytes: usize,
) -> Result<Value, BridgeError> {
    let mut converter = Converter { vm, limit_bytes, used: 0, path: Vec::new() };
    converter.convert(obj)
}

enum Segment {
    Index(usize),
    Key(String),
}

struct Converter<'vm> {
    vm: &'vm VirtualMachine,
    limit_bytes: usize,
    used: usize,
    path: Vec<Segment>,
}

impl Converter<'_> {
    fn charge(&mut self, bytes: usize) -> Result<(), BridgeError> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit_bytes { Err(BridgeError::TooLarge) } else { Ok(()) }
    }

    fn path(&self) -> String {
        let mut out = String::from("$");
        for segment in &self.path {
            match segment {
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
                Segment::Key(k) if is_plain_key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Segment::Key(k) => out.push_str(&format!("[{}]", Value::String(k.clone()))),
            }
        }
        out
    }

    fn fail<T>(&self, what: impl std::fmt::Display) -> Result<T, BridgeError> {
        Err(BridgeError::NotJson(format!("{}: {what}", self.path())))
    }

    fn convert(&mut self, obj: &PyObject) -> Result<Value, BridgeError> {
        let vm = self.vm;
        if self.path.len() > MAX_DEPTH {
            return self
                .fail(format!("nested deeper than {MAX_DEPTH} levels (does a container contain itself?)"));
        }
        if vm.is_none(obj) {
            self.charge(4)?;
            return Ok(Value::Null);
        }
        if obj.fast_isinstance(vm.ctx.types.bool_type) {
            self.charge(5)?;
            return Ok(Value::Bool(obj.is(&vm.ctx.true_value)));
        }
        if let Some(int) = obj.downcast_ref::<PyInt>() {
            return self.convert_int(obj, int);
        }
        if let Some(float) = obj.downcast_ref::<PyFloat>() {
            let f = float.to_f64();
            let Some(number) = Number::from_f64(f) else {
                return self.fail(format!(
                    "float {} is not valid JSON; return None or a string instead",
                    if f.is_nan() {
                        "nan"
                    } else if f > 0.0 {
                        "inf"
                    } else {
                        "-inf"
                    }
                ));
            };
            self.charge(24)?;
            return Ok(Value::Number(number));
        }
        if let Some(s) = obj.downcast_ref::<PyStr>() {
            let Some(text) = s.to_str() else {
                return self.fail("string contains unpaired surrogates");
            };
            self.charge(escaped_len(text))?;
            return Ok(Value::String(text.to_owned()));
        }
        if let Some(list) = obj.downcast_ref::<PyList>() {
            let items = list.borrow_vec().to_vec();
            return self.convert_sequence(&items);
        }
        if let Some(tuple) = obj.downcast_ref::<PyTuple>() {
            return self.convert_sequence(tuple.as_slice());
        }
        if let Some(dict) = obj.downcast_ref::<PyDict>() {
            return self.convert_dict(dict);
        }
        self.fail(not_json_hint(&obj.class().name()))
    }

    fn convert_int(&mut self, obj: &PyObject, int: &PyInt) -> Result<Value, BridgeError> {
        let vm = self.vm;
        if let Ok(i) = int.try_to_primitive::<i64>(vm) {
            self.charge(20)?;
            return Ok(Value::Number(i.into()));
        }
        if let Ok(u) = int.try_to_primitive::<u64>(vm) {
            self.charge(20)?;
            return Ok(Value::Number(u.into()));
        }
        let bits = vm
            .call_method(obj, "bit_length", ())
            .ok()
            .and_then(|b| b.downcast_ref::<PyInt>().and_then(|b| b.try_to_primitive::<u64>(vm).ok()));
        let size = bits.map(|b| format!(" ({b} bits)")).unwrap_or_default();
        self.fail(format!("int{size} does not fit in 64 bits; return str(x) to keep every digit"))
    }

    fn convert_sequence(&mut self, items: &[PyObjectRef]) -> Result<Value, BridgeError> {
        self.charge(2)?;
        let mut out = Vec::with_capacity(items.len().min(1 << 16));
        for (i, item) in items.iter().enumerate() {
            self.charge(1)?;
            self.path.push(Segment::Index(i));
            let value = self.convert(item)?;
            self.path.pop();
            out.push(value);
        }
        Ok(Value::Array(out))
    }

    fn convert_dict(&mut self, dict: &PyDict) -> Result<Value, BridgeError> {
        self.charge(2)?;
        let mut out = Map::new();
        for (key, item) in dict.items_vec() {
            let Some(key) = key.downcast_ref::<PyStr>() else {
                let shown = key
                    .repr(self.vm)
                    .ok()
                    .map(|r| truncate(&r.to_string_lossy(), 40))
                    .unwrap_or_else(|| "?".into());
                return self.fail(format!(
                    "dict key {shown} ({}) is not a string; JSON object keys must be str",
                    key.class().name()
                ));
            };
            let Some(key) = key.to_str() else {
                return self.fail("dict key contains unpaired surrogates");
            };
            self.charge(escaped_len(key) + 2)?;
            self.path.push(Segment::Key(key.to_owned()));
            let value = self.convert(&item)?;
            self.path.pop();
            out.insert(key.to_owned(), value);
        }
        Ok(Value::Object(out))
    }
}

/// An upper bound of the JSON-escaped length of `text`, quotes included.
fn escaped_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
        + 2
}

fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit())
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(max_chars).collect();
        out.push('…');
        out
    }
}

fn not_json_hint(type_name: &str) -> String {
    let hint = match type_name {
        "set" | "frozenset" => "return sorted(x) or list(x)",
        "bytes" | "bytearray" => "return x.decode() or x.hex()",
        "Fraction" => "return float(x), str(x) or [x.numerator, x.denominator]",
        "Decimal" => "return str(x) or float(x)",
        "complex" => "return [z.real, z.imag]",
        "generator" | "map" | "filter" | "zip" | "range" | "dict_keys" | "dict_values" | "dict_items"
        | "enumerate" | "reversed" | "list_iterator" => "return list(x)",
        "function" | "builtin_function_or_method" | "type" | "module" => "return data, not code",
        _ => "return a dict, list, str, int, float, bool or None",
    };
    format!("a value of type {type_name} is not JSON; {hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_len_is_an_upper_bound() {
        for text in ["plain", "quote\"", "tab\t", "nul\u{0}", "é", ""] {
            let exact = serde_json::to_string(text).unwrap().len();
            assert!(escaped_len(text) >= exact, "{text:?}");
        }
    }

    #[test]
    fn hints_name_the_type() {
        assert!(not_json_hint("set").contains("set"));
        assert!(not_json_hint("set").contains("sorted"));
        assert!(not_json_hint("Widget").contains("Widget"));
    }
}
