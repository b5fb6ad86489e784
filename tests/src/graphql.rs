//! A tiny GraphQL front end: a parser for executable documents (operations,
//! variables, arguments, nested selection sets, aliases, `@skip`/`@include`),
//! schema validation of selections, and projection of a JSON value through a
//! selection set. Fragments are rejected.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value as Json};

/// 1-based source position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A parse, validation or variable error, rendered like gqlgen does.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphQlError {
    pub message: String,
    pub pos: Option<Pos>,
    /// `path` entries (e.g. `["variable", "id"]`).
    pub path: Vec<String>,
}

impl GraphQlError {
    pub fn new(message: impl Into<String>, pos: Option<Pos>) -> GraphQlError {
        GraphQlError { message: message.into(), pos, path: Vec::new() }
    }

    /// The error as an element of a response's `errors` array.
    pub fn to_json(&self, code: Option<&str>) -> Json {
        let mut m = Map::new();
        m.insert("message".into(), Json::String(self.message.clone()));
        if let Some(p) = self.pos {
            m.insert("locations".into(), serde_json::json!([{"line": p.line, "column": p.column}]));
        }
        if !self.path.is_empty() {
            m.insert("path".into(), serde_json::json!(self.path));
        }
        if let Some(c) = code {
            m.insert("extensions".into(), serde_json::json!({ "code": c }));
        }
        Json::Object(m)
    }
}

impl fmt::Display for GraphQlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}: {}", p.line, p.column, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for GraphQlError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    Query,
    Mutation,
    Subscription,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TypeRef {
    Named(String),
    List(Box<TypeRef>),
    NonNull(Box<TypeRef>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct VariableDefinition {
    pub name: String,
    pub type_ref: TypeRef,
    pub default: Option<Value>,
    pub pos: Pos,
}

/// A literal or variable in argument position.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Variable(String),
    Int(i64),
    Float(f64),
    String(String),
    Boolean(bool),
    Null,
    Enum(String),
    List(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// Resolves variables and converts to JSON (enums become strings).
    /// An unknown variable resolves to `null` (validation reports it).
    pub fn to_json(&self, vars: &Map<String, Json>) -> Json {
        match self {
            Value::Variable(n) => vars.get(n).cloned().unwrap_or(Json::Null),
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map(Json::Number).unwrap_or(Json::Null),
            Value::String(s) | Value::Enum(s) => Json::String(s.clone()),
            Value::Boolean(b) => Json::Bool(*b),
            Value::Null => Json::Null,
            Value::List(l) => Json::Array(l.iter().map(|v| v.to_json(vars)).collect()),
            Value::Object(o) => Json::Object(o.iter().map(|(k, v)| (k.clone(), v.to_json(vars))).collect()),
        }
    }

    fn collect_variables(&self, out: &mut Vec<String>) {
        match self {
            Value::Variable(n) => out.push(n.clone()),
            Value::List(l) => l.iter().for_each(|v| v.collect_variables(out)),
            Value::Object(o) => o.iter().for_each(|(_, v)| v.collect_variables(out)),
            _ => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Directive {
    pub name: String,
    pub arguments: Vec<(String, Value)>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub alias: Option<String>,
    pub name: String,
    pub arguments: Vec<(String, Value)>,
    pub directives: Vec<Directive>,
    /// `None` for a leaf selection.
    pub selection_set: Option<Vec<Field>>,
    pub pos: Pos,
}

impl Field {
    /// The key this field gets in the response (alias or name).
    pub fn response_key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }

    pub fn argument(&self, name: &str) -> Option<&Value> {
        self.arguments.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Evaluates `@skip(if:)` / `@include(if:)`.
    pub fn is_included(&self, vars: &Map<String, Json>) -> bool {
        self.directives.iter().all(|d| {
            let cond = d.arguments.iter().find(|(n, _)| n == "if").map(|(_, v)| v.to_json(vars) == Json::Bool(true));
            match d.name.as_str() {
                "skip" => cond != Some(true),
                "include" => cond != Some(false),
                _ => true,
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub kind: OperationKind,
    pub name: Option<String>,
    pub variables: Vec<VariableDefinition>,
    pub selection_set: Vec<Field>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub operations: Vec<Operation>,
}

impl Document {
    /// Picks the operation to run, like a GraphQL server does.
    pub fn operation(&self, name: Option<&str>) -> Result<&Operation, GraphQlError> {
        match name.filter(|n| !n.is_empty()) {
            Some(n) => self
                .operations
                .iter()
                .find(|o| o.name.as_deref() == Some(n))
                .ok_or_else(|| GraphQlError::new(format!("operation {n} not found"), None)),
            None if self.operations.len() == 1 => Ok(&self.operations[0]),
            None => Err(GraphQlError::new("operation name is required", None)),
        }
    }
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Punct(char),
    Spread,
    Name(String),
    Int(i64),
    Float(f64),
    Str(String),
    Eof,
}

struct Lexer<'a> {
    src: &'a [u8],
    text: &'a str,
    i: usize,
    line: usize,
    line_start: usize,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer { src: text.as_bytes(), text, i: 0, line: 1, line_start: 0 }
    }

    fn pos(&self) -> Pos {
        let col = self.text.get(self.line_start..self.i).map_or(self.i - self.line_start, |s| s.chars().count());
        Pos { line: self.line, column: col + 1 }
    }

    fn rest(&self) -> &'a str {
        self.text.get(self.i..).unwrap_or("")
    }

    fn newline(&mut self) {
        self.line += 1;
        self.line_start = self.i;
    }

    fn skip_ignored(&mut self) {
        while let Some(&b) = self.src.get(self.i) {
            match b {
                b' ' | b'\t' | b',' | b'\r' => self.i += 1,
                b'\n' => {
                    self.i += 1;
                    self.newline();
                }
                b'#' => {
                    while self.src.get(self.i).is_some_and(|&c| c != b'\n') {
                        self.i += 1;
                    }
                }
                0xEF if self.src[self.i..].starts_with(&[0xEF, 0xBB, 0xBF]) => self.i += 3,
                _ => break,
            }
        }
    }

    fn err(&self, msg: impl Into<String>, pos: Pos) -> GraphQlError {
        GraphQlError::new(msg, Some(pos))
    }

    fn next(&mut self) -> Result<(Tok, Pos), GraphQlError> {
        self.skip_ignored();
        let pos = self.pos();
        let Some(&b) = self.src.get(self.i) else {
            return Ok((Tok::Eof, pos));
        };
        match b {
            b'!' | b'$' | b'(' | b')' | b':' | b'=' | b'@' | b'[' | b']' | b'{' | b'}' | b'|' | b'&' => {
                self.i += 1;
                Ok((Tok::Punct(b as char), pos))
            }
            b'.' => {
                if self.src[self.i..].starts_with(b"...") {
                    self.i += 3;
                    Ok((Tok::Spread, pos))
                } else {
                    Err(self.err("Unexpected .", pos))
                }
            }
            b'"' => self.string(pos),
            b'-' | b'0'..=b'9' => self.number(pos),
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                let start = self.i;
                while self.src.get(self.i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
                    self.i += 1;
                }
                Ok((Tok::Name(self.text.get(start..self.i).unwrap_or("").to_string()), pos))
            }
            _ => {
                let c = self.rest().chars().next().unwrap_or('?');
                Err(self.err(format!("Unexpected {c}"), pos))
            }
        }
    }

    fn number(&mut self, pos: Pos) -> Result<(Tok, Pos), GraphQlError> {
        let start = self.i;
        if self.src[self.i] == b'-' {
            self.i += 1;
        }
        let digits = |l: &mut Self| {
            let s = l.i;
            while l.src.get(l.i).is_some_and(u8::is_ascii_digit) {
                l.i += 1;
            }
            l.i > s
        };
        if !digits(self) {
            return Err(self.err("Invalid number, expected digit", pos));
        }
        let mut float = false;
        if self.src.get(self.i) == Some(&b'.') {
            self.i += 1;
            float = true;
            if !digits(self) {
                return Err(self.err("Invalid number, expected digit after .", pos));
            }
        }
        if matches!(self.src.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            float = true;
            if matches!(self.src.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return Err(self.err("Invalid number, expected digit in exponent", pos));
            }
        }
        let text = self.text.get(start..self.i).unwrap_or("");
        if float {
            text.parse::<f64>()
                .map(|f| (Tok::Float(f), pos))
                .map_err(|_| self.err(format!("Invalid number {text}"), pos))
        } else {
            text.parse::<i64>().map(|n| (Tok::Int(n), pos)).map_err(|_| self.err(format!("Invalid number {text}"), pos))
        }
    }

    fn string(&mut self, pos: Pos) -> Result<(Tok, Pos), GraphQlError> {
        if self.src[self.i..].starts_with(b"\"\"\"") {
            self.i += 3;
            let start = self.i;
            loop {
                if self.i >= self.src.len() {
                    return Err(self.err("Unterminated string.", pos));
                }
                if self.src[self.i..].starts_with(b"\"\"\"") {
                    let s = self.text.get(start..self.i).unwrap_or("").replace("\\\"\"\"", "\"\"\"");
                    self.i += 3;
                    return Ok((Tok::Str(s), pos));
                }
                if self.src[self.i] == b'\n' {
                    self.i += 1;
                    self.newline();
                } else {
                    self.i += 1;
                }
            }
        }
        self.i += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.rest().chars().next() else {
                return Err(self.err("Unterminated string.", pos));
            };
            self.i += c.len_utf8();
            match c {
                '"' => return Ok((Tok::Str(out), pos)),
                '\n' => return Err(self.err("Unterminated string.", pos)),
                '\\' => {
                    let Some(e) = self.rest().chars().next() else {
                        return Err(self.err("Unterminated string.", pos));
                    };
                    self.i += e.len_utf8();
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        '/' => out.push('/'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'u' => {
                            let hex = self.text.get(self.i..self.i + 4).unwrap_or("");
                            let cp =
                                u32::from_str_radix(hex, 16).map_err(|_| self.err("Invalid unicode escape", pos))?;
                            self.i += 4;
                            out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        }
                        other => {
                            return Err(self.err(format!("Invalid escape \\{other}"), pos));
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

struct Parser<'a> {
    lex: Lexer<'a>,
    tok: Tok,
    pos: Pos,
}

/// Parses an executable GraphQL document.
pub fn parse(src: &str) -> Result<Document, GraphQlError> {
    let mut lex = Lexer::new(src);
    let (tok, pos) = lex.next()?;
    let mut p = Parser { lex, tok, pos };
    let mut operations = Vec::new();
    loop {
        match &p.tok {
            Tok::Eof => break,
            Tok::Punct('{') => {
                let pos = p.pos;
                let selection_set = p.selection_set()?;
                operations.push(Operation {
                    kind: OperationKind::Query,
                    name: None,
                    variables: Vec::new(),
                    selection_set,
                    pos,
                });
            }
            Tok::Name(n) if n == "fragment" => {
                return Err(GraphQlError::new("fragments are not supported by this fake server", Some(p.pos)));
            }
            Tok::Name(n) if matches!(n.as_str(), "query" | "mutation" | "subscription") => {
                let kind = match n.as_str() {
                    "query" => OperationKind::Query,
                    "mutation" => OperationKind::Mutation,
                    _ => OperationKind::Subscription,
                };
                let pos = p.pos;
                p.advance()?;
                let name = match &p.tok {
                    Tok::Name(n) => {
                        let n = n.clone();
                        p.advance()?;
                        Some(n)
                    }
                    _ => None,
                };
                let variables = if p.tok == Tok::Punct('(') { p.variable_definitions()? } else { Vec::new() };
                p.directives()?;
                let selection_set = p.selection_set()?;
                operations.push(Operation { kind, name, variables, selection_set, pos });
            }
            _ => return Err(p.unexpected()),
        }
    }
    if operations.is_empty() {
        return Err(GraphQlError::new("Unexpected <EOF>", Some(p.pos)));
    }
    Ok(Document { operations })
}

impl Parser<'_> {
    fn advance(&mut self) -> Result<(), GraphQlError> {
        let (t, p) = self.lex.next()?;
        self.tok = t;
        self.pos = p;
        Ok(())
    }

    fn unexpected(&self) -> GraphQlError {
        let what = match &self.tok {
            Tok::Punct(c) => c.to_string(),
            Tok::Spread => "...".to_string(),
            Tok::Name(n) => format!("Name \"{n}\""),
            Tok::Int(i) => format!("Int \"{i}\""),
            Tok::Float(f) => format!("Float \"{f}\""),
            Tok::Str(s) => format!("String \"{s}\""),
            Tok::Eof => "<EOF>".to_string(),
        };
        GraphQlError::new(format!("Unexpected {what}"), Some(self.pos))
    }

    fn expect(&mut self, c: char) -> Result<(), GraphQlError> {
        if self.tok == Tok::Punct(c) {
            self.advance()
        } else {
            Err(GraphQlError::new(
                format!("Expected {c}, found {}", self.unexpected().message.trim_start_matches("Unexpected ")),
                Some(self.pos),
            ))
        }
    }

    fn name(&mut self) -> Result<String, GraphQlError> {
        match &self.tok {
            Tok::Name(n) => {
                let n = n.clone();
                self.advance()?;
                Ok(n)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn variable_definitions(&mut self) -> Result<Vec<VariableDefinition>, GraphQlError> {
        self.expect('(')?;
        let mut out = Vec::new();
        while self.tok != Tok::Punct(')') {
            let pos = self.pos;
            self.expect('$')?;
            let name = self.name()?;
            self.expect(':')?;
            let type_ref = self.type_ref()?;
            let default = if self.tok == Tok::Punct('=') {
                self.advance()?;
                Some(self.value(true)?)
            } else {
                None
            };
            self.directives()?;
            out.push(VariableDefinition { name, type_ref, default, pos });
        }
        self.advance()?;
        Ok(out)
    }

    fn type_ref(&mut self) -> Result<TypeRef, GraphQlError> {
        let base = if self.tok == Tok::Punct('[') {
            self.advance()?;
            let inner = self.type_ref()?;
            self.expect(']')?;
            TypeRef::List(Box::new(inner))
        } else {
            TypeRef::Named(self.name()?)
        };
        if self.tok == Tok::Punct('!') {
            self.advance()?;
            return Ok(TypeRef::NonNull(Box::new(base)));
        }
        Ok(base)
    }

    fn directives(&mut self) -> Result<Vec<Directive>, GraphQlError> {
        let mut out = Vec::new();
        while self.tok == Tok::Punct('@') {
            let pos = self.pos;
            self.advance()?;
            let name = self.name()?;
            let arguments = self.arguments()?;
            out.push(Directive { name, arguments, pos });
        }
        Ok(out)
    }

    fn arguments(&mut self) -> Result<Vec<(String, Value)>, GraphQlError> {
        let mut out = Vec::new();
        if self.tok != Tok::Punct('(') {
            return Ok(out);
        }
        self.advance()?;
        while self.tok != Tok::Punct(')') {
            let name = self.name()?;
            self.expect(':')?;
            out.push((name, self.value(false)?));
        }
        self.advance()?;
        Ok(out)
    }

    fn value(&mut self, constant: bool) -> Result<Value, GraphQlError> {
        let v = match self.tok.clone() {
            Tok::Punct('$') if !constant => {
                self.advance()?;
                return Ok(Value::Variable(self.name()?));
            }
            Tok::Int(i) => Value::Int(i),
            Tok::Float(f) => Value::Float(f),
            Tok::Str(s) => Value::String(s),
            Tok::Name(n) => match n.as_str() {
                "true" => Value::Boolean(true),
                "false" => Value::Boolean(false),
                "null" => Value::Null,
                _ => Value::Enum(n),
            },
            Tok::Punct('[') => {
                self.advance()?;
                let mut items = Vec::new();
                while self.tok != Tok::Punct(']') {
                    items.push(self.value(constant)?);
                }
                self.advance()?;
                return Ok(Value::List(items));
            }
            Tok::Punct('{') => {
                self.advance()?;
                let mut fields = Vec::new();
                while self.tok != Tok::Punct('}') {
                    let name = self.name()?;
                    self.expect(':')?;
                    fields.push((name, self.value(constant)?));
                }
                self.advance()?;
                return Ok(Value::Object(fields));
            }
            _ => return Err(self.unexpected()),
        };
        self.advance()?;
        Ok(v)
    }

    fn selection_set(&mut self) -> Result<Vec<Field>, GraphQlError> {
        self.expect('{')?;
        let mut out = Vec::new();
        loop {
            match &self.tok {
                Tok::Punct('}') => {
                    if out.is_empty() {
                        return Err(GraphQlError::new("Expected Name, found }", Some(self.pos)));
                    }
                    self.advance()?;
                    return Ok(out);
                }
                Tok::Spread => {
                    return Err(GraphQlError::new("fragments are not supported by this fake server", Some(self.pos)));
                }
                _ => out.push(self.field()?),
            }
        }
    }

    fn field(&mut self) -> Result<Field, GraphQlError> {
        let pos = self.pos;
        let first = self.name()?;
        let (alias, name) = if self.tok == Tok::Punct(':') {
            self.advance()?;
            (Some(first), self.name()?)
        } else {
            (None, first)
        };
        let arguments = self.arguments()?;
        let directives = self.directives()?;
        let selection_set = if self.tok == Tok::Punct('{') { Some(self.selection_set()?) } else { None };
        Ok(Field { alias, name, arguments, directives, selection_set, pos })
    }
}

// ---------------------------------------------------------------------------
// Schema, validation, projection
// ---------------------------------------------------------------------------

/// What a field of an object type returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A leaf; the name is the scalar/enum type for messages ("String").
    Scalar(&'static str),
    /// An object (or list of objects) of this type.
    Object(&'static str),
}

/// A field's schema: result kind and accepted argument names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDef {
    pub kind: FieldKind,
    pub args: &'static [&'static str],
}

/// The part of a schema validation and projection need.
pub trait Schema {
    fn field(&self, type_name: &str, field: &str) -> Option<FieldDef>;

    /// Value of a field that depends on its arguments (e.g.
    /// `fingerprint(type:)`), computed from the parent object. `None` means
    /// "read the parent's key".
    fn computed(
        &self,
        _type_name: &str,
        _field: &Field,
        _parent: &Map<String, Json>,
        _vars: &Map<String, Json>,
    ) -> Option<Json> {
        None
    }
}

/// Checks a selection set against the schema: unknown fields and
/// arguments, leaf/object selection mismatches. Messages follow gqlparser.
pub fn validate(schema: &dyn Schema, type_name: &str, selection: &[Field], errors: &mut Vec<GraphQlError>) {
    for f in selection {
        if f.name == "__typename" {
            if f.selection_set.is_some() {
                errors.push(GraphQlError::new(
                    "Field \"__typename\" must not have a selection since type \"String!\" has no subfields.",
                    Some(f.pos),
                ));
            }
            continue;
        }
        let Some(def) = schema.field(type_name, &f.name) else {
            errors.push(GraphQlError::new(
                format!("Cannot query field \"{}\" on type \"{type_name}\".", f.name),
                Some(f.pos),
            ));
            continue;
        };
        for (arg, _) in &f.arguments {
            if !def.args.contains(&arg.as_str()) {
                errors.push(GraphQlError::new(
                    format!("Unknown argument \"{arg}\" on field \"{type_name}.{}\".", f.name),
                    Some(f.pos),
                ));
            }
        }
        match (def.kind, &f.selection_set) {
            (FieldKind::Scalar(t), Some(_)) => errors.push(GraphQlError::new(
                format!("Field \"{}\" must not have a selection since type \"{t}\" has no subfields.", f.name),
                Some(f.pos),
            )),
            (FieldKind::Object(t), None) => errors.push(GraphQlError::new(
                format!(
                    "Field \"{}\" of type \"{t}\" must have a selection of subfields. Did you mean \"{} {{ ... }}\"?",
                    f.name, f.name
                ),
                Some(f.pos),
            )),
            (FieldKind::Object(t), Some(sub)) => validate(schema, t, sub, errors),
            (FieldKind::Scalar(_), None) => {}
        }
    }
}

/// Checks variable definitions against their uses and the supplied values:
/// undefined/unused variables, missing required values.
pub fn validate_variables(op: &Operation, supplied: &Map<String, Json>, errors: &mut Vec<GraphQlError>) {
    let mut used = Vec::new();
    fn walk(fields: &[Field], used: &mut Vec<(String, Pos)>) {
        for f in fields {
            let mut names = Vec::new();
            for (_, v) in &f.arguments {
                v.collect_variables(&mut names);
            }
            for d in &f.directives {
                for (_, v) in &d.arguments {
                    v.collect_variables(&mut names);
                }
            }
            used.extend(names.into_iter().map(|n| (n, f.pos)));
            if let Some(sub) = &f.selection_set {
                walk(sub, used);
            }
        }
    }
    walk(&op.selection_set, &mut used);
    let defined: BTreeSet<&str> = op.variables.iter().map(|v| v.name.as_str()).collect();
    for (name, pos) in &used {
        if !defined.contains(name.as_str()) {
            let msg = match &op.name {
                Some(o) => format!("Variable \"${name}\" is not defined by operation \"{o}\"."),
                None => format!("Variable \"${name}\" is not defined."),
            };
            errors.push(GraphQlError::new(msg, Some(*pos)));
        }
    }
    for def in &op.variables {
        if !used.iter().any(|(n, _)| *n == def.name) {
            let msg = match &op.name {
                Some(o) => format!("Variable \"${}\" is never used in operation \"{o}\".", def.name),
                None => format!("Variable \"${}\" is never used.", def.name),
            };
            errors.push(GraphQlError::new(msg, Some(def.pos)));
        }
        let required = matches!(def.type_ref, TypeRef::NonNull(_)) && def.default.is_none();
        let value = supplied.get(&def.name);
        if required && value.is_none_or(Json::is_null) {
            let mut e = GraphQlError::new(if value.is_none() { "must be defined" } else { "cannot be null" }, None);
            e.path = vec!["variable".into(), def.name.clone()];
            errors.push(e);
        }
    }
}

/// Variable values with definitions' defaults filled in.
pub fn effective_variables(op: &Operation, supplied: &Map<String, Json>) -> Map<String, Json> {
    let mut vars = supplied.clone();
    for def in &op.variables {
        if !vars.contains_key(&def.name)
            && let Some(d) = &def.default
        {
            vars.insert(def.name.clone(), d.to_json(&Map::new()));
        }
    }
    vars
}

/// Projects `value` (an object, a list of objects, or null) of type
/// `type_name` through `selection`, keeping only the selected fields under
/// their response keys. Assumes the selection was validated.
pub fn project(
    schema: &dyn Schema,
    type_name: &str,
    value: &Json,
    selection: &[Field],
    vars: &Map<String, Json>,
) -> Json {
    match value {
        Json::Array(items) => {
            Json::Array(items.iter().map(|v| project(schema, type_name, v, selection, vars)).collect())
        }
        Json::Object(obj) => {
            let mut out = Map::new();
            for f in selection.iter().filter(|f| f.is_included(vars)) {
                let key = f.response_key().to_string();
                if f.name == "__typename" {
                    out.insert(key, Json::String(type_name.to_string()));
                    continue;
                }
                let Some(def) = schema.field(type_name, &f.name) else {
                    continue;
                };
                let raw = schema
                    .computed(type_name, f, obj, vars)
                    .unwrap_or_else(|| obj.get(&f.name).cloned().unwrap_or(Json::Null));
                let v = match (def.kind, &f.selection_set) {
                    (FieldKind::Object(t), Some(sub)) => project(schema, t, &raw, sub, vars),
                    _ => raw,
                };
                out.insert(key, v);
            }
            Json::Object(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct TestSchema;
    impl Schema for TestSchema {
        fn field(&self, t: &str, f: &str) -> Option<FieldDef> {
            let kind = match (t, f) {
                ("Query", "thing") => FieldKind::Object("Thing"),
                ("Thing", "id" | "name") => FieldKind::Scalar("String"),
                ("Thing", "child") => FieldKind::Object("Thing"),
                _ => return None,
            };
            let args: &'static [&'static str] = if f == "thing" { &["id"] } else { &[] };
            Some(FieldDef { kind, args })
        }
    }

    #[test]
    fn parses_operations_variables_and_values() {
        let doc = parse(
            r#"# comment
            query Name($id: ID!, $f: [String!] = ["a"]) {
              findScene(id: $id) { id files { path } }
              other: configuration { plugins(include: ["x", "y"]) }
              findScenes(filter: {page: 2, per_page: -1, direction: DESC, q: "a\"b\u00e9"}, x: 1.5e2) @skip(if: false) { count }
            }"#,
        )
        .expect("parse");
        let op = doc.operation(None).expect("op");
        assert_eq!(op.kind, OperationKind::Query);
        assert_eq!(op.name.as_deref(), Some("Name"));
        assert_eq!(op.variables.len(), 2);
        assert_eq!(op.variables[0].type_ref, TypeRef::NonNull(Box::new(TypeRef::Named("ID".into()))));
        assert_eq!(op.selection_set[1].response_key(), "other");
        let filter = op.selection_set[2].argument("filter").expect("filter");
        assert_eq!(filter.to_json(&Map::new()), json!({"page": 2, "per_page": -1, "direction": "DESC", "q": "a\"bé"}));
        assert_eq!(op.selection_set[2].pos, Pos { line: 5, column: 15 });
        let mut vars = Map::new();
        vars.insert("id".into(), json!("7"));
        assert_eq!(op.selection_set[0].argument("id").map(|v| v.to_json(&vars)), Some(json!("7")));

        let anon = parse("{ configuration { plugins } }").expect("anon");
        assert_eq!(anon.operations[0].selection_set[0].name, "configuration");
    }

    #[test]
    fn rejects_fragments_and_syntax_errors() {
        let e = parse("query { findScene(id: 1) { ...F } } fragment F on Scene { id }").expect_err("frag");
        assert!(e.message.contains("fragments"));
        assert!(parse("fragment F on Scene { id }").is_err());
        let e = parse("query { findScene(id: 1) { id }").expect_err("eof");
        assert!(e.message.contains("EOF"), "{e}");
        assert!(parse("{ a(b: \"unterminated) }").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn validates_and_projects_only_selected_fields() {
        let doc = parse("{ thing(id: 1) { id nick: name child { id } } }").expect("parse");
        let sel = &doc.operations[0].selection_set;
        let mut errors = Vec::new();
        validate(&TestSchema, "Query", sel, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let data = json!({"id": "1", "name": "n", "secret": "s", "child": {"id": "2", "name": "c"}});
        let thing = &sel[0];
        let out = project(&TestSchema, "Thing", &data, thing.selection_set.as_deref().unwrap_or(&[]), &Map::new());
        assert_eq!(out, json!({"id": "1", "nick": "n", "child": {"id": "2"}}));

        let doc = parse("{ thing(bad: 1) { nope child name { x } } }").expect("parse");
        let mut errors = Vec::new();
        validate(&TestSchema, "Query", &doc.operations[0].selection_set, &mut errors);
        let msgs: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert!(msgs.contains(&"Unknown argument \"bad\" on field \"Query.thing\"."));
        assert!(msgs.contains(&"Cannot query field \"nope\" on type \"Thing\"."));
        assert!(msgs.iter().any(|m| m.starts_with("Field \"child\" of type \"Thing\" must have a selection")));
        assert!(msgs.iter().any(|m| m.starts_with("Field \"name\" must not have a selection")));
    }

    #[test]
    fn variable_checks() {
        let doc = parse("query Q($a: ID!, $b: Int) { thing(id: $a) { id } other(x: $c) { id } }").expect("parse");
        let op = &doc.operations[0];
        let mut errors = Vec::new();
        validate_variables(op, &Map::new(), &mut errors);
        let msgs: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
        assert!(msgs.contains(&"Variable \"$c\" is not defined by operation \"Q\".".to_string()));
        assert!(msgs.contains(&"Variable \"$b\" is never used in operation \"Q\".".to_string()));
        assert!(errors.iter().any(|e| e.message == "must be defined" && e.path == ["variable", "a"]));
    }
}
