//! The YAML the template is written in, read into a tree: block mappings and
//! sequences, one-line flow collections, quoted and plain scalars, folded text and
//! the short forms of CloudFormation's functions (`!Ref`, `!GetAtt`, `!Sub`, ...).
//! Anything else panics with its line, so no test reads the template wrongly.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Seq(Vec<Value>),
    Map(Vec<(String, Value)>),
    /// A function in short form: `!GetAtt BackupKey.Arn` is `Tag("!GetAtt", "BackupKey.Arn")`.
    Tag(String, Box<Value>),
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries().iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn entries(&self) -> &[(String, Value)] {
        match self {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    /// A list's items, or a single value as a list of one (as IAM reads them).
    pub fn items(&self) -> Vec<&Value> {
        match self {
            Value::Seq(items) => items.iter().collect(),
            other => vec![other],
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One line, quotes dropped: `!Sub [arn:${AWS::Partition}:s3:::x, {Id: !Ref Y}]`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Tag(tag, value) => write!(f, "{tag} {value}"),
            Value::Seq(items) => {
                let items: Vec<String> = items.iter().map(Value::to_string).collect();
                write!(f, "[{}]", items.join(", "))
            }
            Value::Map(entries) => {
                let entries: Vec<String> = entries.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                write!(f, "{{{}}}", entries.join(", "))
            }
        }
    }
}

pub fn parse(text: &str) -> Value {
    let lines = text.lines().map(|l| (l.len() - l.trim_start_matches(' ').len(), l.trim().to_owned()));
    let mut parser = Parser { lines: lines.collect(), at: 0 };
    let indent = parser.next().map(|(indent, _)| indent).expect("empty document");
    let value = parser.block(indent);
    if let Some((_, text)) = parser.next() {
        panic!("line {}: unexpected `{text}`", parser.at + 1);
    }
    value
}

struct Parser {
    /// Indentation and text of each line; a sequence item's line is rewritten to
    /// its content, indented to where the content starts.
    lines: Vec<(usize, String)>,
    at: usize,
}

impl Parser {
    /// The next line that holds a node (comments and blank lines skipped).
    fn next(&mut self) -> Option<(usize, String)> {
        while let Some((indent, text)) = self.lines.get(self.at) {
            let text = strip_comment(text);
            if !text.is_empty() {
                return Some((*indent, text.to_owned()));
            }
            self.at += 1;
        }
        None
    }

    fn block(&mut self, indent: usize) -> Value {
        let Some((_, text)) = self.next() else { return Value::Str(String::new()) };
        if is_item(&text) {
            self.sequence(indent)
        } else if key_of(&text).is_some() {
            self.mapping(indent)
        } else {
            self.at += 1;
            flow(&text, self.at)
        }
    }

    fn sequence(&mut self, indent: usize) -> Value {
        let mut items = Vec::new();
        while let Some((at, text)) = self.next().filter(|(at, text)| *at == indent && is_item(text)) {
            let content = &text[1..];
            let column = at + 1 + (content.len() - content.trim_start().len());
            if content.trim().is_empty() {
                self.at += 1;
                let child = self.next().map(|(i, _)| i).filter(|i| *i > indent);
                items.push(child.map(|i| self.block(i)).unwrap_or(Value::Str(String::new())));
            } else {
                self.lines[self.at] = (column, content.trim().to_owned());
                items.push(self.block(column));
            }
        }
        Value::Seq(items)
    }

    fn mapping(&mut self, indent: usize) -> Value {
        let mut entries = Vec::new();
        while let Some((_, text)) = self.next().filter(|(at, text)| *at == indent && !is_item(text)) {
            let line = self.at + 1;
            let (key, rest) = key_of(&text).unwrap_or_else(|| panic!("line {line}: expected `key: value`"));
            self.at += 1;
            let value = match rest.as_str() {
                "" => self.nested(indent),
                ">" | ">-" | "|" | "|-" => self.text(indent, rest.starts_with('>')),
                tag if tag.starts_with('!') && !tag.contains(' ') && self.deeper(indent) => {
                    Value::Tag(tag.to_owned(), Box::new(self.nested(indent)))
                }
                inline => flow(inline, line),
            };
            entries.push((key, value));
        }
        Value::Map(entries)
    }

    fn deeper(&mut self, indent: usize) -> bool {
        self.next().is_some_and(|(at, _)| at > indent)
    }

    /// The value under `key:`: a deeper block, or a sequence at the key's own indent.
    fn nested(&mut self, indent: usize) -> Value {
        match self.next() {
            Some((at, _)) if at > indent => self.block(at),
            Some((at, text)) if at == indent && is_item(&text) => self.sequence(indent),
            _ => Value::Str(String::new()),
        }
    }

    /// A `>` or `|` scalar: the lines deeper than its key, comments included.
    fn text(&mut self, indent: usize, folded: bool) -> Value {
        let mut lines = Vec::new();
        while let Some((at, text)) = self.lines.get(self.at) {
            if !text.is_empty() && *at <= indent {
                break;
            }
            lines.push(text.clone());
            self.at += 1;
        }
        Value::Str(lines.join(if folded { " " } else { "\n" }).trim().to_owned())
    }
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// Cuts a `#` comment that starts a line or follows a space, outside quotes.
fn strip_comment(text: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (at, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if (c == '"' || c == '\'') && " [{,:".contains(previous) => quote = Some(c),
            None if c == '#' && previous == ' ' => return text[..at].trim_end(),
            None => {}
        }
        previous = c;
    }
    text
}

/// `key: rest` of a mapping line; keys may hold colons (`kms:ViaService: ...`).
fn key_of(text: &str) -> Option<(String, String)> {
    if text.starts_with(['[', '{', '!', '&', '*', '|', '>']) {
        return None;
    }
    let mut quote = None;
    for (at, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if at == 0 && (c == '"' || c == '\'') => quote = Some(c),
            None if c == ':' && text[at + 1..].chars().next().is_none_or(|n| n == ' ') => {
                let key = text[..at].trim().trim_matches(['"', '\'']);
                return Some((key.to_owned(), text[at + 1..].trim().to_owned()));
            }
            None => {}
        }
    }
    None
}

/// A value written on one line: a scalar, or a flow collection.
fn flow(text: &str, line: usize) -> Value {
    let mut flow = Flow { chars: text.chars().collect(), at: 0, line };
    let value = flow.value(false);
    flow.skip_spaces();
    if flow.at != flow.chars.len() {
        flow.fail("trailing text");
    }
    value
}

struct Flow {
    chars: Vec<char>,
    at: usize,
    line: usize,
}

impl Flow {
    fn fail(&self, what: &str) -> ! {
        let text: String = self.chars.iter().collect();
        panic!("line {}: {what} at column {} of `{text}`", self.line, self.at + 1)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(' ') {
            self.at += 1;
        }
    }

    fn ends_value(&self, inside: bool) -> bool {
        self.peek().is_none_or(|c| inside && ",]}".contains(c))
    }

    fn value(&mut self, inside: bool) -> Value {
        self.skip_spaces();
        match self.peek() {
            Some('!') => {
                let tag = self.take_while(|c| !" [{,]}".contains(c));
                self.skip_spaces();
                let value =
                    if self.ends_value(inside) { Value::Str(String::new()) } else { self.value(inside) };
                Value::Tag(tag, Box::new(value))
            }
            Some('[') => {
                self.at += 1;
                let mut items = Vec::new();
                while !self.end_of_collection(']', items.is_empty()) {
                    items.push(self.value(true));
                }
                Value::Seq(items)
            }
            Some('{') => {
                self.at += 1;
                let mut entries = Vec::new();
                while !self.end_of_collection('}', entries.is_empty()) {
                    let key = self.scalar(true, true);
                    if !self.eat(':') {
                        self.fail("expected `:`");
                    }
                    self.skip_spaces();
                    let value =
                        if self.ends_value(true) { Value::Str(String::new()) } else { self.value(true) };
                    entries.push((key, value));
                }
                Value::Map(entries)
            }
            _ => Value::Str(self.scalar(inside, false)),
        }
    }

    fn eat(&mut self, c: char) -> bool {
        let found = self.peek() == Some(c);
        self.at += usize::from(found);
        found
    }

    /// Before an item: `closer` ends the collection; after one, `,` must follow.
    fn end_of_collection(&mut self, closer: char, first: bool) -> bool {
        self.skip_spaces();
        if self.eat(closer) {
            return true;
        }
        if !first && !self.eat(',') {
            self.fail("expected `,`");
        }
        self.skip_spaces();
        self.eat(closer)
    }

    fn scalar(&mut self, inside: bool, key: bool) -> String {
        self.skip_spaces();
        match self.peek() {
            Some('"') => self.quoted('"'),
            Some('\'') => self.quoted('\''),
            _ if key => {
                let start = self.at;
                while self.peek().is_some_and(|c| c != ':' || self.chars.get(self.at + 1) != Some(&' ')) {
                    self.at += 1;
                }
                self.chars[start..self.at].iter().collect::<String>().trim().to_owned()
            }
            _ => self.take_while(|c| !(inside && ",]}".contains(c))).trim_end().to_owned(),
        }
    }

    fn quoted(&mut self, quote: char) -> String {
        self.at += 1;
        let mut text = String::new();
        loop {
            match (self.peek(), self.chars.get(self.at + 1).copied()) {
                (None, _) => self.fail("unterminated string"),
                (Some('\\'), Some(escaped)) if quote == '"' => {
                    text.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                    self.at += 2;
                }
                (Some(c), Some(next)) if c == quote && next == quote && quote == '\'' => {
                    text.push(quote);
                    self.at += 2;
                }
                (Some(c), _) if c == quote => {
                    self.at += 1;
                    return text;
                }
                (Some(c), _) => {
                    text.push(c);
                    self.at += 1;
                }
            }
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let start = self.at;
        while self.peek().is_some_and(&keep) {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }
}
