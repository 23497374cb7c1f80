//! A YAML tree that remembers the line of every node, built from yaml-rust2's marked events.
//!
//! serde_yaml's `Value` forgets where a value came from, and serde stops at the first problem;
//! the spec validator needs every problem at once, each with its line.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A scalar as written: plain scalars are typed (int, float, bool, null), quoted ones are text.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Scalar {
    fn from_plain(s: &str) -> Scalar {
        match s {
            "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
            "true" | "True" | "TRUE" => return Scalar::Bool(true),
            "false" | "False" | "FALSE" => return Scalar::Bool(false),
            _ => {}
        }
        if let Ok(i) = s.parse::<i64>() {
            return Scalar::Int(i);
        }
        let looks_numeric = s
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
            && s.chars().any(|c| c.is_ascii_digit());
        if looks_numeric {
            if let Ok(f) = s.parse::<f64>() {
                return Scalar::Float(f);
            }
        }
        Scalar::Str(s.to_string())
    }

    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::Int(_) => "an integer",
            Scalar::Float(_) => "a number",
            Scalar::Str(_) => "a string",
        }
    }
}

/// The value as written in the file (`pemsd9`, `7`, `true`, `null`), for error messages.
impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Null => f.write_str("null"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Str(s) => f.write_str(s),
        }
    }
}

/// A node with the (1-based) line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in file order: (key, key line, value).
    Map(Vec<(String, usize, Node)>),
}

impl Node {
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar(s) => s.kind(),
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// The node for a message: a scalar's value in backticks, else what it is and how it was
    /// written (`a mapping `{a: 1}``), shortened when long.
    pub fn shown(&self) -> String {
        match &self.kind {
            Kind::Scalar(Scalar::Str(s)) => format!("`{s}`"),
            Kind::Scalar(Scalar::Int(i)) => format!("`{i}`"),
            Kind::Scalar(Scalar::Float(f)) => format!("`{f}`"),
            Kind::Scalar(Scalar::Bool(b)) => format!("`{b}`"),
            Kind::Scalar(Scalar::Null) => "null".to_string(),
            Kind::Seq(_) | Kind::Map(_) => {
                const MAX: usize = 40;
                let mut text = self.flow();
                if text.chars().count() > MAX {
                    text = text.chars().take(MAX - 1).collect::<String>() + "…";
                }
                format!("{} `{text}`", self.describe())
            }
        }
    }

    /// The node in YAML's one-line flow style: `{a: 1, b: [x, y]}`.
    fn flow(&self) -> String {
        match &self.kind {
            Kind::Scalar(s) => s.to_string(),
            Kind::Seq(items) => {
                let items: Vec<String> = items.iter().map(Node::flow).collect();
                format!("[{}]", items.join(", "))
            }
            Kind::Map(entries) => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|(k, _, v)| format!("{k}: {}", v.flow()))
                    .collect();
                format!("{{{}}}", entries.join(", "))
            }
        }
    }

    pub fn as_map(&self) -> Option<&[(String, usize, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self.as_scalar() {
            Some(Scalar::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self.as_scalar() {
            Some(Scalar::Int(i)) => Some(*i as f64),
            Some(Scalar::Float(f)) => Some(*f),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.as_scalar() {
            Some(Scalar::Int(i)) => Some(*i),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, v)| v)
    }
}

/// A YAML syntax error with its line.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Node, Option<(String, usize)>)>,
    pending_key: Vec<Option<(String, usize)>>,
    root: Option<Node>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some((parent, _)) => match &mut parent.kind {
                Kind::Seq(items) => items.push(node),
                Kind::Map(entries) => {
                    let slot = self.pending_key.last_mut().expect("map has a key slot");
                    match slot.take() {
                        None => {
                            // This node is a key.
                            let key = match &node.kind {
                                Kind::Scalar(Scalar::Str(s)) => s.clone(),
                                Kind::Scalar(Scalar::Int(i)) => i.to_string(),
                                Kind::Scalar(Scalar::Float(f)) => f.to_string(),
                                Kind::Scalar(Scalar::Bool(b)) => b.to_string(),
                                _ => {
                                    self.error.get_or_insert(SyntaxError {
                                        line: node.line,
                                        message: "mapping keys must be plain names".into(),
                                    });
                                    String::new()
                                }
                            };
                            *slot = Some((key, node.line));
                        }
                        Some((key, line)) => entries.push((key, line, node)),
                    }
                }
                Kind::Scalar(_) => unreachable!("scalars have no children"),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(value, style, _, _) => {
                let s = if style == TScalarStyle::Plain {
                    Scalar::from_plain(&value)
                } else {
                    Scalar::Str(value)
                };
                self.push_value(Node {
                    line,
                    kind: Kind::Scalar(s),
                });
            }
            Event::SequenceStart(..) => self.stack.push((
                Node {
                    line,
                    kind: Kind::Seq(Vec::new()),
                },
                None,
            )),
            Event::MappingStart(..) => {
                self.stack.push((
                    Node {
                        line,
                        kind: Kind::Map(Vec::new()),
                    },
                    None,
                ));
                self.pending_key.push(None);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    if matches!(node.kind, Kind::Map(_)) {
                        self.pending_key.pop();
                    }
                    self.push_value(node);
                }
            }
            Event::Alias(_) => {
                self.error.get_or_insert(SyntaxError {
                    line,
                    message: "YAML aliases (*name) are not supported in experiment files".into(),
                });
            }
            _ => {}
        }
    }
}

/// Parse `text` into a line-annotated tree (first document only).
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut b, false).map_err(|e| SyntaxError {
        line: e.marker().line(),
        message: e.info().to_string(),
    })?;
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(b.root.unwrap_or(Node {
        line: 1,
        kind: Kind::Scalar(Scalar::Null),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_block_and_flow_nodes() {
        let t = parse(
            "name: x\nruns:\n  - {label: a, lr: 1.0e-3}\n  - label: b\n    alpha1: {pemsd7: 0.1}\n",
        )
        .unwrap();
        let runs = t.get("runs").unwrap().as_seq().unwrap();
        assert_eq!(runs[0].line, 3);
        assert_eq!(runs[0].get("lr").unwrap().as_f64(), Some(1e-3));
        assert_eq!(runs[1].get("alpha1").unwrap().line, 5);
        let (k, line, _) = &runs[1].as_map().unwrap()[1];
        assert_eq!((k.as_str(), *line), ("alpha1", 5));
        assert_eq!(t.get("name").unwrap().as_str(), Some("x"));
    }

    #[test]
    fn scalars_are_typed_unless_quoted() {
        let t = parse("a: 3\nb: '3'\nc: true\nd: 1e-3\ne: ~\nf: abc\ng: -2.5\n").unwrap();
        assert_eq!(t.get("a").unwrap().as_i64(), Some(3));
        assert_eq!(t.get("b").unwrap().as_str(), Some("3"));
        assert_eq!(t.get("c").unwrap().as_scalar(), Some(&Scalar::Bool(true)));
        assert_eq!(t.get("d").unwrap().as_f64(), Some(1e-3));
        assert_eq!(t.get("e").unwrap().as_scalar(), Some(&Scalar::Null));
        assert_eq!(t.get("f").unwrap().as_str(), Some("abc"));
        assert_eq!(t.get("g").unwrap().as_f64(), Some(-2.5));
    }

    #[test]
    fn syntax_errors_have_lines() {
        let e = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
    }
}
