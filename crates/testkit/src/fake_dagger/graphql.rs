//! Just enough of GraphQL to read the queries a Dagger client sends: one anonymous or named
//! `query` operation of fields with aliases, arguments and selection sets; values are strings,
//! numbers, booleans, null, enums, lists and objects. Variables and fragments are refused.

use std::fmt;

/// A field of a selection set.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The alias, if the query gave one.
    pub alias: Option<String>,
    /// The field name.
    pub name: String,
    /// Arguments in query order.
    pub args: Vec<(String, Value)>,
    /// The sub-selection (empty for a leaf).
    pub selection: Vec<Field>,
}

impl Field {
    /// The key of this field in the response: its alias, else its name.
    pub fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }

    /// The argument `name`, if given.
    pub fn arg(&self, name: &str) -> Option<&Value> {
        self.args.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The string argument `name`, if given as a string.
    pub fn str_arg(&self, name: &str) -> Option<&str> {
        match self.arg(name) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }
}

/// An argument value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `"text"`.
    String(String),
    /// An integer or float literal, as written.
    Number(String),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// An enum value such as `ANY`.
    Enum(String),
    /// `[a, b]`.
    List(Vec<Value>),
    /// `{k: v}`.
    Object(Vec<(String, Value)>),
}

/// A parse failure, with the byte offset.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// Byte offset in the query.
    pub at: usize,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Syntax Error: {} (at byte {})", self.message, self.at)
    }
}

/// Parses one query document into its top-level selection set.
pub fn parse(query: &str) -> Result<Vec<Field>, ParseError> {
    let mut p = Parser {
        src: query.as_bytes(),
        pos: 0,
    };
    p.skip_ignored();
    if p.peek() != Some(b'{') {
        let word = p.name()?;
        if word != "query" {
            return Err(p.error(format!("expected `query` or `{{`, found {word:?}")));
        }
        p.skip_ignored();
        if p.peek() != Some(b'{') {
            p.name()?;
            p.skip_ignored();
        }
        if p.peek() == Some(b'(') {
            return Err(p.error("variables are not supported by this fake".to_owned()));
        }
    }
    let selection = p.selection_set()?;
    p.skip_ignored();
    if p.pos != p.src.len() {
        return Err(p.error("unexpected text after the operation".to_owned()));
    }
    Ok(selection)
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, message: String) -> ParseError {
        ParseError {
            at: self.pos,
            message,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    /// Skips white space, commas and `#` comments.
    fn skip_ignored(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | b',' => self.pos += 1,
                b'#' => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), ParseError> {
        self.skip_ignored();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected `{}`", c as char)))
        }
    }

    fn name(&mut self) -> Result<String, ParseError> {
        self.skip_ignored();
        let start = self.pos;
        while let Some(c) = self.peek() {
            let ok =
                c == b'_' || c.is_ascii_alphabetic() || (self.pos > start && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("expected a name".to_owned()));
        }
        Ok(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
    }

    fn selection_set(&mut self) -> Result<Vec<Field>, ParseError> {
        self.expect(b'{')?;
        let mut fields = Vec::new();
        loop {
            self.skip_ignored();
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                Some(b'.') => return Err(self.error("fragments are not supported".to_owned())),
                None => return Err(self.error("unclosed selection set".to_owned())),
                _ => fields.push(self.field()?),
            }
        }
        if fields.is_empty() {
            return Err(self.error("empty selection set".to_owned()));
        }
        Ok(fields)
    }

    fn field(&mut self) -> Result<Field, ParseError> {
        let first = self.name()?;
        self.skip_ignored();
        let (alias, name) = if self.peek() == Some(b':') {
            self.pos += 1;
            (Some(first), self.name()?)
        } else {
            (None, first)
        };
        self.skip_ignored();
        let mut args = Vec::new();
        if self.peek() == Some(b'(') {
            self.pos += 1;
            loop {
                self.skip_ignored();
                if self.peek() == Some(b')') {
                    self.pos += 1;
                    break;
                }
                let arg = self.name()?;
                self.expect(b':')?;
                let value = self.value()?;
                args.push((arg, value));
            }
        }
        self.skip_ignored();
        let selection = if self.peek() == Some(b'{') {
            self.selection_set()?
        } else {
            Vec::new()
        };
        Ok(Field {
            alias,
            name,
            args,
            selection,
        })
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        self.skip_ignored();
        match self.peek() {
            Some(b'"') => self.string().map(Value::String),
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ignored();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        break;
                    }
                    if self.peek().is_none() {
                        return Err(self.error("unclosed list".to_owned()));
                    }
                    items.push(self.value()?);
                }
                Ok(Value::List(items))
            }
            Some(b'{') => {
                self.pos += 1;
                let mut fields = Vec::new();
                loop {
                    self.skip_ignored();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        break;
                    }
                    let key = self.name()?;
                    self.expect(b':')?;
                    fields.push((key, self.value()?));
                }
                Ok(Value::Object(fields))
            }
            Some(b'$') => Err(self.error("variables are not supported by this fake".to_owned())),
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.pos;
                self.pos += 1;
                while let Some(c) = self.peek() {
                    if c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-') {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                Ok(Value::Number(
                    String::from_utf8_lossy(&self.src[start..self.pos]).into_owned(),
                ))
            }
            Some(_) => {
                let word = self.name()?;
                Ok(match word.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" => Value::Null,
                    _ => Value::Enum(word),
                })
            }
            None => Err(self.error("expected a value".to_owned())),
        }
    }

    /// A `"..."` string with GraphQL escapes (block strings are not supported).
    fn string(&mut self) -> Result<String, ParseError> {
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error("unterminated string".to_owned()));
            };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\n' | b'\r' => return Err(self.error("line break in a string".to_owned())),
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.error("unterminated escape".to_owned()));
                    };
                    self.pos += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        other => {
                            return Err(self.error(format!("bad escape \\{}", other as char)));
                        }
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 && c != b'\t' => {
                    return Err(self.error("control character in a string".to_owned()));
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.error("string is not UTF-8".to_owned()))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let digits = self
            .src
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("short \\u escape".to_owned()))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.error("bad \\u".to_owned()))?;
        let v = u32::from_str_radix(text, 16).map_err(|_| self.error("bad \\u".to_owned()))?;
        self.pos += 4;
        Ok(v)
    }

    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            // A surrogate pair, as JSON encoders write non-BMP characters.
            if self.src.get(self.pos..self.pos + 2) != Some(b"\\u") {
                return Err(self.error("lone surrogate".to_owned()));
            }
            self.pos += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.error("bad surrogate pair".to_owned()));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.error("bad code point".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_dagger_pipeline() {
        let q = r#"query Run { container { from(address: "alpine:3") {
            withEnvVariable(name: "A", value: "x\"y\n\u00e9\ud83d\ude00") {
            run: withExec(args: ["sh", "-c", "exit 3"], expect: ANY) { stdout stderr exitCode } } } } }"#;
        let fields = parse(q).expect("parse");
        let from = &fields[0].selection[0];
        assert_eq!(from.str_arg("address"), Some("alpine:3"));
        let env = &from.selection[0];
        assert_eq!(env.str_arg("value"), Some("x\"y\n\u{e9}\u{1F600}"));
        let exec = &env.selection[0];
        assert_eq!(exec.key(), "run");
        assert_eq!(exec.arg("expect"), Some(&Value::Enum("ANY".into())));
        assert_eq!(
            exec.arg("args"),
            Some(&Value::List(vec![
                Value::String("sh".into()),
                Value::String("-c".into()),
                Value::String("exit 3".into())
            ]))
        );
        assert_eq!(exec.selection.len(), 3);
    }

    #[test]
    fn refuses_broken_queries() {
        for bad in [
            "",
            "{",
            "{ a(b: ) }",
            "{ a(b: \"x) }",
            "mutation { a }",
            "{ a } b",
            "{ a(b: $v) }",
            "{ }",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
