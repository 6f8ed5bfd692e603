//! Arithmetic expressions over named quantities: the ground truth of a problem, the program the
//! student writes, and the arithmetic it does "in its head" all come from one tree.
//!
//! The grammar is Python's integer subset sgde problems need: `+ - * //`, parentheses, names and
//! non-negative integer literals, with Python's precedence and left associativity.

use std::collections::BTreeMap;
use std::fmt;

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    /// Python's `//` (floor division).
    FloorDiv,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::FloorDiv => "//",
        }
    }

    fn precedence(self) -> u8 {
        match self {
            Op::Add | Op::Sub => 1,
            Op::Mul | Op::FloorDiv => 2,
        }
    }

    /// Exact result, `None` on overflow or division by zero.
    pub fn apply(self, a: i128, b: i128) -> Option<i128> {
        match self {
            Op::Add => a.checked_add(b),
            Op::Sub => a.checked_sub(b),
            Op::Mul => a.checked_mul(b),
            Op::FloorDiv => (b != 0).then(|| a.div_euclid(b) - i128::from(b < 0 && a.rem_euclid(b) != 0)),
        }
    }
}

/// An expression tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Num(i128),
    Var(String),
    Bin(Op, Box<Expr>, Box<Expr>),
}

/// Values of the named quantities.
pub type Vars = BTreeMap<String, i128>;

impl Expr {
    /// Parses the expression grammar above.
    pub fn parse(source: &str) -> Result<Expr, String> {
        let tokens = tokenize(source)?;
        let mut parser = Parser { tokens, pos: 0 };
        let expr = parser.sum()?;
        match parser.tokens.get(parser.pos) {
            None => Ok(expr),
            Some(t) => Err(format!("unexpected `{t}`")),
        }
    }

    /// The exact value; `None` for unknown names, overflow, division by zero.
    pub fn eval(&self, vars: &Vars) -> Option<i128> {
        self.eval_with(vars, &mut |op, a, b| op.apply(a, b))
    }

    /// Evaluates with a caller-supplied arithmetic (the student's fallible mental arithmetic).
    pub fn eval_with(
        &self,
        vars: &Vars,
        apply: &mut dyn FnMut(Op, i128, i128) -> Option<i128>,
    ) -> Option<i128> {
        match self {
            Expr::Num(n) => Some(*n),
            Expr::Var(name) => vars.get(name).copied(),
            Expr::Bin(op, l, r) => {
                let a = l.eval_with(vars, apply)?;
                let b = r.eval_with(vars, apply)?;
                apply(*op, a, b)
            }
        }
    }

    /// True when every `//` divides exactly (so `//` and `/` agree, as in the word problem).
    pub fn divides_exactly(&self, vars: &Vars) -> bool {
        let mut exact = true;
        let value = self.eval_with(vars, &mut |op, a, b| {
            if op == Op::FloorDiv && (b == 0 || a % b != 0) {
                exact = false;
            }
            op.apply(a, b)
        });
        value.is_some() && exact
    }

    /// The expression with names replaced by their values: `12 * 30 * 3`.
    pub fn substitute(&self, vars: &Vars) -> Expr {
        match self {
            Expr::Var(name) => vars.get(name).map_or_else(|| self.clone(), |v| Expr::Num(*v)),
            Expr::Num(_) => self.clone(),
            Expr::Bin(op, l, r) => Expr::Bin(*op, Box::new(l.substitute(vars)), Box::new(r.substitute(vars))),
        }
    }

    /// Number of binary operations.
    pub fn op_count(&self) -> usize {
        match self {
            Expr::Bin(_, l, r) => 1 + l.op_count() + r.op_count(),
            _ => 0,
        }
    }

    /// The tree with the operator of the `index`-th operation (post-order) replaced.
    pub fn with_op(&self, index: usize, new_op: &dyn Fn(Op) -> Op) -> Expr {
        fn walk(e: &Expr, counter: &mut usize, index: usize, new_op: &dyn Fn(Op) -> Op) -> Expr {
            match e {
                Expr::Bin(op, l, r) => {
                    let l = walk(l, counter, index, new_op);
                    let r = walk(r, counter, index, new_op);
                    let op = if *counter == index { new_op(*op) } else { *op };
                    *counter += 1;
                    Expr::Bin(op, Box::new(l), Box::new(r))
                }
                other => other.clone(),
            }
        }
        walk(self, &mut 0, index, new_op)
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, parent: u8, right_of_non_assoc: bool) -> fmt::Result {
        match self {
            Expr::Num(n) => write!(f, "{n}"),
            Expr::Var(name) => f.write_str(name),
            Expr::Bin(op, l, r) => {
                let p = op.precedence();
                let parens = p < parent || (p == parent && right_of_non_assoc);
                if parens {
                    f.write_str("(")?;
                }
                l.write(f, p, false)?;
                write!(f, " {} ", op.symbol())?;
                // `a - (b - c)` and `a // (b * c)` need their parentheses; `a + (b + c)` does not
                // change value but we keep trees as written, so only non-associative ops matter.
                r.write(f, p, matches!(op, Op::Sub | Op::FloorDiv) || (*op == Op::Mul && r.is_div()))?;
                if parens {
                    f.write_str(")")?;
                }
                Ok(())
            }
        }
    }

    fn is_div(&self) -> bool {
        matches!(self, Expr::Bin(Op::FloorDiv, ..))
    }
}

/// Python source of the expression, minimal parentheses.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, 0, false)
    }
}

fn tokenize(source: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = source.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_ascii_digit() || c.is_alphabetic() || c == '_' {
            let mut word = String::new();
            while let Some(&c) = chars.peek().filter(|c| c.is_alphanumeric() || **c == '_') {
                word.push(c);
                chars.next();
            }
            tokens.push(word);
        } else if c == '/' {
            chars.next();
            if chars.next() != Some('/') {
                return Err("only `//` division is supported".into());
            }
            tokens.push("//".into());
        } else if "+-*()".contains(c) {
            tokens.push(c.to_string());
            chars.next();
        } else {
            return Err(format!("unexpected character `{c}`"));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<String>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn sum(&mut self) -> Result<Expr, String> {
        let mut left = self.product()?;
        while let Some(op) = self.peek().and_then(|t| match t {
            "+" => Some(Op::Add),
            "-" => Some(Op::Sub),
            _ => None,
        }) {
            self.pos += 1;
            left = Expr::Bin(op, Box::new(left), Box::new(self.product()?));
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Expr, String> {
        let mut left = self.atom()?;
        while let Some(op) = self.peek().and_then(|t| match t {
            "*" => Some(Op::Mul),
            "//" => Some(Op::FloorDiv),
            _ => None,
        }) {
            self.pos += 1;
            left = Expr::Bin(op, Box::new(left), Box::new(self.atom()?));
        }
        Ok(left)
    }

    fn atom(&mut self) -> Result<Expr, String> {
        let token = self.peek().ok_or("unexpected end")?.to_owned();
        self.pos += 1;
        if token == "(" {
            let inner = self.sum()?;
            if self.peek() != Some(")") {
                return Err("missing `)`".into());
            }
            self.pos += 1;
            return Ok(inner);
        }
        if let Ok(n) = token.parse::<i128>() {
            return Ok(Expr::Num(n));
        }
        if token.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_') {
            return Ok(Expr::Var(token));
        }
        Err(format!("unexpected `{token}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, i128)]) -> Vars {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn parses_evaluates_and_prints() {
        let e = Expr::parse("(eggs - eaten - baked) * price").unwrap();
        let v = vars(&[("eggs", 16), ("eaten", 3), ("baked", 4), ("price", 2)]);
        assert_eq!(e.eval(&v), Some(18));
        assert_eq!(e.to_string(), "(eggs - eaten - baked) * price");
        assert_eq!(e.substitute(&v).to_string(), "(16 - 3 - 4) * 2");
        assert_eq!(e.op_count(), 3);
        let e = Expr::parse("a - (b - c)").unwrap();
        assert_eq!(e.to_string(), "a - (b - c)");
        let e = Expr::parse("a * f // g").unwrap();
        assert_eq!(e.eval(&vars(&[("a", 7), ("f", 3), ("g", 2)])), Some(10));
        assert!(!e.divides_exactly(&vars(&[("a", 7), ("f", 3), ("g", 2)])));
        assert!(e.divides_exactly(&vars(&[("a", 8), ("f", 3), ("g", 2)])));
        assert!(Expr::parse("a / b").is_err());
        assert!(Expr::parse("(a").is_err());
        assert!(Expr::parse("a b").is_err());
    }

    #[test]
    fn operator_swaps_are_positional() {
        let e = Expr::parse("a + b * c").unwrap();
        let swapped = e.with_op(0, &|_| Op::Add);
        assert_eq!(swapped.to_string(), "a + b + c");
        assert_eq!(swapped.eval(&vars(&[("a", 1), ("b", 2), ("c", 3)])), Some(6));
        assert_eq!(Op::FloorDiv.apply(-7, 2), Some(-4));
        assert_eq!(Op::FloorDiv.apply(7, 0), None);
    }
}
