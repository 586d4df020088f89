//! Consul's filter expressions (the go-bexpr syntax of `?filter=` and of
//! resolver subsets): `Service.Meta.version == v2`, `canary in
//! Service.Tags`, `Service.ID matches "^web-"`, combined with `and`, `or`,
//! `not` and parentheses. An expression is parsed once into a [`Filter`];
//! a syntax error names the byte offset where it was found.
//!
//! Selectors walk a JSON value by field names (`Service.Meta.env`, or
//! `Service.Meta["dotted.key"]`). A selector that names nothing matches
//! nothing, except under `!=`, `not in`, `not contains` and `is empty`.

#![forbid(unsafe_code)]

use serde_json::Value;

/// The longest expression accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;
/// The deepest nesting of `not` and parentheses accepted.
pub const MAX_FILTER_DEPTH: usize = 32;

/// A filter that does not parse: what was wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter {expression:?}: at offset {offset}: {message}")]
pub struct FilterError {
    pub expression: String,
    /// Byte offset into the expression.
    pub offset: usize,
    pub message: String,
}

/// A parsed expression.
#[derive(Debug, Clone)]
pub struct Filter {
    expr: Expr,
}

#[derive(Debug, Clone)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Match {
        selector: Vec<String>,
        op: Op,
        value: String,
    },
}

#[derive(Debug, Clone)]
enum Op {
    Equal,
    NotEqual,
    /// `value in selector` and `selector contains value`.
    Contains,
    NotContains,
    Matches(regex::Regex),
    NotMatches(regex::Regex),
    Empty,
    NotEmpty,
}

impl Filter {
    /// Parses `expression`.
    pub fn parse(expression: &str) -> Result<Filter, FilterError> {
        let fail = |offset: usize, message: String| FilterError {
            expression: expression.chars().take(200).collect(),
            offset,
            message,
        };
        if expression.len() > MAX_FILTER_LEN {
            return Err(fail(
                MAX_FILTER_LEN,
                format!("longer than {MAX_FILTER_LEN} bytes (MAX_FILTER_LEN)"),
            ));
        }
        let tokens = lex(expression).map_err(|(at, m)| fail(at, m))?;
        let mut parser = Parser {
            tokens,
            at: 0,
            end: expression.len(),
            depth: 0,
        };
        let expr = parser.or().map_err(|(at, m)| fail(at, m))?;
        if let Some(t) = parser.tokens.get(parser.at) {
            return Err(fail(t.offset, format!("unexpected {:?}", t.text)));
        }
        Ok(Filter { expr })
    }

    /// Whether `value` passes the filter.
    pub fn matches(&self, value: &Value) -> bool {
        eval(&self.expr, value)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Word,
    Quoted,
    Symbol,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    text: String,
    offset: usize,
}

type Parsed<T> = Result<T, (usize, String)>;

fn lex(input: &str) -> Parsed<Vec<Token>> {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        match c {
            b'"' | b'`' => {
                let quote = c;
                i += 1;
                let mut text = String::new();
                loop {
                    let Some(&b) = bytes.get(i) else {
                        return Err((start, "a quoted value is not closed".into()));
                    };
                    if b == quote {
                        i += 1;
                        break;
                    }
                    if b == b'\\' && quote == b'"' {
                        match bytes.get(i + 1) {
                            Some(&e @ (b'"' | b'\\')) => {
                                text.push(e as char);
                                i += 2;
                                continue;
                            }
                            _ => return Err((i, "unknown escape in a quoted value".into())),
                        }
                    }
                    let ch = input[i..].chars().next().unwrap_or('\u{fffd}');
                    text.push(ch);
                    i += ch.len_utf8();
                }
                out.push(Token {
                    kind: Kind::Quoted,
                    text,
                    offset: start,
                });
            }
            b'=' | b'!' => {
                if bytes.get(i + 1) != Some(&b'=') {
                    return Err((i, format!("expected \"{}=\"", c as char)));
                }
                i += 2;
                out.push(Token {
                    kind: Kind::Symbol,
                    text: input[start..i].to_string(),
                    offset: start,
                });
            }
            b'(' | b')' | b'.' | b'[' | b']' => {
                i += 1;
                out.push(Token {
                    kind: Kind::Symbol,
                    text: (c as char).to_string(),
                    offset: start,
                });
            }
            _ if c.is_ascii_alphanumeric() || b"_-:/*+@".contains(&c) => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || b"_-:/*+@".contains(&bytes[i]))
                {
                    i += 1;
                }
                out.push(Token {
                    kind: Kind::Word,
                    text: input[start..i].to_string(),
                    offset: start,
                });
            }
            _ => {
                let ch = input[i..].chars().next().unwrap_or('?');
                return Err((i, format!("unexpected character {ch:?}")));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn offset(&self) -> usize {
        self.peek().map_or(self.end, |t| t.offset)
    }

    fn keyword(&mut self, word: &str) -> bool {
        let hit = self
            .peek()
            .is_some_and(|t| t.kind == Kind::Word && t.text == word);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn symbol(&mut self, s: &str) -> bool {
        let hit = self
            .peek()
            .is_some_and(|t| t.kind == Kind::Symbol && t.text == s);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn deeper(&mut self) -> Parsed<()> {
        self.depth += 1;
        if self.depth > MAX_FILTER_DEPTH {
            return Err((
                self.offset(),
                format!("nested deeper than {MAX_FILTER_DEPTH} (MAX_FILTER_DEPTH)"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Parsed<Expr> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Parsed<Expr> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Parsed<Expr> {
        if self.keyword("not") {
            self.deeper()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        if self.symbol("(") {
            self.deeper()?;
            let inner = self.or()?;
            self.depth -= 1;
            if !self.symbol(")") {
                return Err((self.offset(), "expected \")\"".into()));
            }
            return Ok(inner);
        }
        self.matcher()
    }

    /// A value: a quoted string or a bare word.
    fn value(&mut self) -> Parsed<String> {
        match self.peek() {
            Some(t) if t.kind != Kind::Symbol => {
                let text = t.text.clone();
                self.at += 1;
                Ok(text)
            }
            _ => Err((self.offset(), "expected a value".into())),
        }
    }

    fn selector(&mut self) -> Parsed<Vec<String>> {
        let mut path = Vec::new();
        match self.peek() {
            Some(t) if t.kind == Kind::Word => {
                path.push(t.text.clone());
                self.at += 1;
            }
            _ => {
                return Err((
                    self.offset(),
                    "expected a selector (like Service.Meta.env)".into(),
                ))
            }
        }
        loop {
            if self.symbol(".") {
                match self.peek() {
                    Some(t) if t.kind == Kind::Word => {
                        path.push(t.text.clone());
                        self.at += 1;
                    }
                    _ => return Err((self.offset(), "expected a field name after \".\"".into())),
                }
            } else if self.symbol("[") {
                path.push(self.value()?);
                if !self.symbol("]") {
                    return Err((self.offset(), "expected \"]\"".into()));
                }
            } else {
                return Ok(path);
            }
        }
    }

    fn matcher(&mut self) -> Parsed<Expr> {
        // `value [not] in selector`: the value comes first.
        let save = self.at;
        if self.peek().is_some_and(|t| t.kind != Kind::Symbol) {
            let value = self.value()?;
            let negated = self.keyword("not");
            if self.keyword("in") {
                let selector = self.selector()?;
                let op = if negated {
                    Op::NotContains
                } else {
                    Op::Contains
                };
                return Ok(Expr::Match {
                    selector,
                    op,
                    value,
                });
            }
            self.at = save;
        }
        let selector = self.selector()?;
        let at = self.offset();
        let (op, value) = if self.symbol("==") {
            (Op::Equal, self.value()?)
        } else if self.symbol("!=") {
            (Op::NotEqual, self.value()?)
        } else if self.keyword("is") {
            let negated = self.keyword("not");
            if !self.keyword("empty") {
                return Err((self.offset(), "expected \"empty\" after \"is\"".into()));
            }
            let op = if negated { Op::NotEmpty } else { Op::Empty };
            (op, String::new())
        } else {
            let negated = self.keyword("not");
            if self.keyword("contains") {
                let op = if negated {
                    Op::NotContains
                } else {
                    Op::Contains
                };
                (op, self.value()?)
            } else if self.keyword("matches") {
                let pattern_at = self.offset();
                let pattern = self.value()?;
                let re = regex::RegexBuilder::new(&pattern)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| (pattern_at, format!("bad regular expression: {e}")))?;
                let op = if negated {
                    Op::NotMatches(re)
                } else {
                    Op::Matches(re)
                };
                (op, pattern)
            } else {
                return Err((
                    at,
                    "expected an operator (==, !=, in, contains, matches, is empty)".into(),
                ));
            }
        };
        Ok(Expr::Match {
            selector,
            op,
            value,
        })
    }
}

/// The values `path` names in `value`. A list of objects on the way
/// (`Checks.Status` over a health entry's checks) names the field in each.
fn lookup<'v>(value: &'v Value, path: &[String], out: &mut Vec<&'v Value>) {
    let Some((key, rest)) = path.split_first() else {
        out.push(value);
        return;
    };
    match value {
        Value::Object(map) => {
            if let Some(v) = map.get(key) {
                lookup(v, rest, out);
            }
        }
        Value::Array(items) => {
            for item in items.iter().filter(|i| i.is_object()) {
                lookup(item, path, out);
            }
        }
        _ => {}
    }
}

/// A scalar as the filter compares it.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn contains(field: Option<&Value>, wanted: &str) -> bool {
    match field {
        Some(Value::Array(items)) => items.iter().any(|i| text(i).as_deref() == Some(wanted)),
        Some(Value::Object(map)) => map.contains_key(wanted),
        Some(Value::String(s)) => s.contains(wanted),
        _ => false,
    }
}

fn is_empty(field: Option<&Value>) -> bool {
    match field {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

fn equal(field: Option<&Value>, wanted: &str) -> bool {
    match field.and_then(text) {
        Some(t) if t == wanted => true,
        // Numbers compare by value: 1 == 1.0.
        Some(t) => matches!((t.parse::<f64>(), wanted.parse::<f64>()), (Ok(a), Ok(b)) if a == b),
        None => false,
    }
}

fn eval(expr: &Expr, value: &Value) -> bool {
    match expr {
        Expr::And(a, b) => eval(a, value) && eval(b, value),
        Expr::Or(a, b) => eval(a, value) || eval(b, value),
        Expr::Not(e) => !eval(e, value),
        Expr::Match {
            selector,
            op,
            value: wanted,
        } => {
            let mut found = Vec::new();
            lookup(value, selector, &mut found);
            // Through a list, a field matches if any element's does.
            let any = |f: &dyn Fn(Option<&Value>) -> bool| match found.as_slice() {
                [] => f(None),
                values => values.iter().any(|v| f(Some(v))),
            };
            match op {
                Op::Equal => any(&|f| equal(f, wanted)),
                Op::NotEqual => !any(&|f| equal(f, wanted)),
                Op::Contains => any(&|f| contains(f, wanted)),
                Op::NotContains => !any(&|f| contains(f, wanted)),
                Op::Matches(re) => any(&|f| f.and_then(text).is_some_and(|t| re.is_match(&t))),
                Op::NotMatches(re) => !any(&|f| f.and_then(text).is_some_and(|t| re.is_match(&t))),
                Op::Empty => any(&is_empty),
                Op::NotEmpty => !any(&is_empty),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> Value {
        json!({
            "Node": {"Node": "n1", "Meta": {"rack": "r1"}},
            "Service": {"ID": "web-1", "Service": "web", "Port": 8080,
                        "Tags": ["canary", "eu"], "Meta": {"version": "v2", "dotted.key": "x"}},
            "Checks": []
        })
    }

    fn yes(f: &str) -> bool {
        Filter::parse(f).unwrap().matches(&entry())
    }

    #[test]
    fn the_operators_of_consul_filters() {
        assert!(yes("Service.Meta.version == v2"));
        assert!(yes("Service.Meta.version == \"v2\""));
        assert!(!yes("Service.Meta.version != v2"));
        assert!(yes("canary in Service.Tags"));
        assert!(yes("\"us\" not in Service.Tags"));
        assert!(yes("Service.Tags contains eu"));
        assert!(yes("Service.Meta contains version"));
        assert!(yes("Service.ID matches \"^web-[0-9]+$\""));
        assert!(yes("Service.ID not matches `^db`"));
        assert!(yes("Checks is empty and Service.Tags is not empty"));
        assert!(yes("Service.Port == 8080"));
        assert!(yes("Service.Meta[\"dotted.key\"] == x"));
    }

    #[test]
    fn and_binds_tighter_than_or_and_not_negates() {
        assert!(yes(
            "Service.Service == db or Service.Service == web and eu in Service.Tags"
        ));
        assert!(!yes(
            "(Service.Service == db or Service.Service == web) and us in Service.Tags"
        ));
        assert!(yes("not Service.Meta.version == v1"));
        assert!(yes("not (Service.Service == db)"));
    }

    #[test]
    fn a_missing_field_matches_only_negations() {
        assert!(!yes("Service.Meta.absent == v1"));
        assert!(yes("Service.Meta.absent != v1"));
        assert!(yes("Service.Nope.deeper is empty"));
        assert!(!yes("x in Service.Nope"));
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = Filter::parse("Service.Meta.version = v2").unwrap_err();
        assert_eq!(e.offset, 21, "{e}");
        let e = Filter::parse("Service.Meta.version ==").unwrap_err();
        assert_eq!(e.offset, 23, "{e}");
        assert!(e.message.contains("expected a value"), "{e}");
        let e = Filter::parse("(a == b").unwrap_err();
        assert!(e.message.contains("\")\""), "{e}");
        let e = Filter::parse("a matches \"[\"").unwrap_err();
        assert_eq!(e.offset, 10, "{e}");
        let e = Filter::parse("a == b c").unwrap_err();
        assert_eq!(e.offset, 7, "{e}");
        assert!(Filter::parse("a == \"open").is_err());
        assert!(Filter::parse("").is_err());
    }

    #[test]
    fn size_and_depth_are_bounded() {
        let deep = format!("{}a == b{}", "(".repeat(40), ")".repeat(40));
        let e = Filter::parse(&deep).unwrap_err();
        assert!(e.message.contains("MAX_FILTER_DEPTH"), "{e}");
        let nots = format!("{}a == b", "not ".repeat(40));
        assert!(Filter::parse(&nots).is_err());
        let long = format!("a == \"{}\"", "x".repeat(MAX_FILTER_LEN));
        let e = Filter::parse(&long).unwrap_err();
        assert!(e.message.contains("MAX_FILTER_LEN"), "{e}");
    }

    #[test]
    fn a_field_through_a_list_matches_when_any_element_does() {
        let entry = json!({"Checks": [{"Status": "passing"}, {"Status": "critical"}]});
        let f = |e: &str| Filter::parse(e).unwrap().matches(&entry);
        assert!(f("Checks.Status == critical"));
        assert!(f("Checks.Status == passing"));
        assert!(!f("Checks.Status == warning"));
        assert!(f("Checks.Status != warning"));
        assert!(!f("Checks.Status != critical"));
        assert!(!f("Checks.Output == x"));
    }
}
