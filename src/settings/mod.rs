//! Reading experiment files: their text, located errors, and the sections
//! that the registry's factories read their own settings from.
//!
//! Every error names the key it is about as data ([`ConfigError::key`]) and
//! points at that key's line and column in the file. Keys are found from
//! the parsed document's spans, never by reading a rendered message: toml's
//! own syntax errors carry their span, and values are read with
//! [`de::ValueDeserializer`], whose errors carry their key path.

pub mod de;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::de::DeserializeOwned;

pub use de::{DeError, DeErrorKind};

/// A problem with an experiment file: where, which key, what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}{location}: {message}")]
pub struct ConfigError {
    /// The file (or `<string>`).
    pub file: String,
    /// `:LINE:COLUMN` when known, otherwise empty.
    pub location: String,
    /// The dotted key the error is about (`optimizer.rho`,
    /// `space.hyperparameters.2`), when it is about one.
    pub key: Option<String>,
    /// What is wrong, naming the key and the allowed values.
    pub message: String,
}

impl ConfigError {
    /// The error for a configuration file that cannot be read at all
    /// (missing, unreadable): no location and no key, the I/O reason in the
    /// message. `what` names the kind of file (`experiment`, `study`).
    pub fn unreadable(path: &std::path::Path, what: &str, error: &std::io::Error) -> Self {
        ConfigError {
            file: path.display().to_string(),
            location: String::new(),
            key: None,
            message: format!("cannot read the {what} file: {error}"),
        }
    }
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A dotted key path from its segments.
pub fn dotted(path: &[String]) -> String {
    path.join(".")
}

/// Splits a dotted key (`a.b.0.c`) into segments.
pub fn split_key(key: &str) -> Vec<String> {
    if key.is_empty() {
        Vec::new()
    } else {
        key.split('.').map(str::to_string).collect()
    }
}

/// The text of an experiment file and where it came from. Cheap to clone.
#[derive(Clone)]
pub struct Source {
    inner: Arc<SourceInner>,
}

struct SourceInner {
    file: String,
    text: String,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("file", &self.inner.file)
            .finish()
    }
}

impl Source {
    /// `text`, read from `file` (a path or a label such as `<string>`).
    pub fn new(file: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            inner: Arc::new(SourceInner {
                file: file.into(),
                text: text.into(),
            }),
        }
    }

    /// The file name errors mention.
    pub fn file(&self) -> &str {
        &self.inner.file
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.inner.text
    }

    /// Parses the text into a TOML table; syntax errors are located.
    pub fn parse(&self) -> Result<toml::Table, ConfigError> {
        toml::from_str::<toml::Table>(self.text()).map_err(|e| ConfigError {
            file: self.file().to_string(),
            location: e.span().map(|s| self.location(s.start)).unwrap_or_default(),
            key: None,
            message: e.message().trim().to_string(),
        })
    }

    /// `:line:column` of byte `offset`.
    pub fn location(&self, offset: usize) -> String {
        let (l, c) = line_col(self.text(), offset);
        format!(":{l}:{c}")
    }

    /// Byte spans of the key and of the value at `path` (table keys and
    /// array indices), if the file has it.
    pub fn spans(&self, path: &[String]) -> Option<(Range<usize>, Range<usize>)> {
        let root = toml::de::DeTable::parse(self.text()).ok()?;
        let mut table = root.get_ref();
        let mut current: Option<&toml::de::DeValue> = None;
        let mut found = None;
        for part in path {
            let (key_span, next) = match current {
                None => {
                    let (k, v) = table.get_key_value(part.as_str())?;
                    (k.span(), v)
                }
                Some(v) => match (v.as_array(), part.parse::<usize>()) {
                    (Some(a), Ok(i)) => {
                        let item = a.get(i)?;
                        (item.span(), item)
                    }
                    _ => {
                        let t = v.as_table()?;
                        let (k, v) = t.get_key_value(part.as_str())?;
                        (k.span(), v)
                    }
                },
            };
            found = Some((key_span, next.span()));
            match next.get_ref().as_table() {
                Some(t) => {
                    table = t;
                    current = None;
                }
                None => current = Some(next.get_ref()),
            }
        }
        found
    }

    /// An error about the key at `path`: located at its value, or at the
    /// key itself with `at_key` (for keys that should not be there); at the
    /// file when the file does not have it.
    pub fn error_at(&self, path: &[String], at_key: bool, message: String) -> ConfigError {
        let location = self
            .spans(path)
            .map(|(k, v)| self.location(if at_key { k.start } else { v.start }))
            .unwrap_or_default();
        ConfigError {
            file: self.file().to_string(),
            location,
            key: (!path.is_empty()).then(|| dotted(path)),
            message,
        }
    }

    /// An error about the dotted `key` (located at its value).
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        self.error_at(&split_key(key), false, message.into())
    }

    /// The located error for a [`DeError`] that arose reading the value at
    /// `prefix`, with the full key in its message.
    pub fn de_error(&self, prefix: &[String], e: &DeError) -> ConfigError {
        let mut path = prefix.to_vec();
        path.extend(e.key_path());
        let message = if path.is_empty() {
            e.kind.to_string()
        } else {
            format!("`{}`: {}", dotted(&path), e.kind)
        };
        self.error_at(&path, e.is_unknown_field(), message)
    }
}

/// One section of an experiment file (a table, usually): its value, where
/// it lives, and the file, so that whoever reads it reports located errors.
///
/// Factories of the registry get their settings as a `Section` and read
/// them with [`Section::parse`] into their own serde type.
#[derive(Clone, Debug)]
pub struct Section {
    source: Source,
    path: Vec<String>,
    value: toml::Value,
    /// Keys of this section written elsewhere in the file (flattened into
    /// it), with the path where each is written.
    origins: BTreeMap<String, Vec<String>>,
}

impl Section {
    /// The value at `path` of `source` (an empty table when absent).
    pub fn new(source: &Source, path: Vec<String>, value: Option<toml::Value>) -> Self {
        Section {
            source: source.clone(),
            path,
            value: value.unwrap_or_else(|| toml::Value::Table(toml::Table::new())),
            origins: BTreeMap::new(),
        }
    }

    /// A section with no file behind it (library use: settings built in
    /// code); errors name the key but no line.
    pub fn detached(label: &str, path: &str, value: toml::Value) -> Self {
        Section::new(&Source::new(label, ""), split_key(path), Some(value))
    }

    /// Records that key `key` of this section is written at `written_at`.
    pub fn with_origin(mut self, key: &str, written_at: Vec<String>) -> Self {
        self.origins.insert(key.to_string(), written_at);
        self
    }

    /// The dotted key of the section (`optimizer`, `energy.meter`).
    pub fn key(&self) -> String {
        dotted(&self.path)
    }

    /// The key path of the section.
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// The file it comes from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The value.
    pub fn value(&self) -> &toml::Value {
        &self.value
    }

    /// The value as a table (empty when it is not one).
    pub fn table(&self) -> toml::Table {
        self.value.as_table().cloned().unwrap_or_default()
    }

    /// Whether the section is an empty table.
    pub fn is_empty(&self) -> bool {
        self.value.as_table().is_some_and(|t| t.is_empty())
    }

    /// The sub-section at `key`, if present.
    pub fn get(&self, key: &str) -> Option<Section> {
        let v = self.value.get(key)?.clone();
        Some(Section {
            source: self.source.clone(),
            path: self.full_path(&[key.to_string()]),
            value: v,
            origins: BTreeMap::new(),
        })
    }

    /// This section without the keys in `keys` (for passing on what a
    /// reader of the common keys leaves to someone else).
    pub fn without(&self, keys: &[&str]) -> Section {
        let mut s = self.clone();
        if let toml::Value::Table(t) = &mut s.value {
            t.retain(|k, _| !keys.contains(&k));
        }
        s
    }

    /// This section with only the keys in `keys` (for reading the common
    /// keys of a section whose other keys belong to someone else).
    pub fn only(&self, keys: &[&str]) -> Section {
        let mut s = self.clone();
        if let toml::Value::Table(t) = &mut s.value {
            t.retain(|k, _| keys.contains(&k));
        }
        s
    }

    /// The full path of a key inside this section, following origins.
    fn full_path(&self, sub: &[String]) -> Vec<String> {
        if let Some(first) = sub.first() {
            if let Some(origin) = self.origins.get(first) {
                let mut p = origin.clone();
                p.extend(sub[1..].iter().cloned());
                return p;
            }
        }
        let mut p = self.path.clone();
        p.extend(sub.iter().cloned());
        p
    }

    /// Reads the section as `T`; errors are located at the offending key.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        de::from_value::<T>(&self.value).map_err(|e| {
            let sub = e.key_path();
            let path = self.full_path(&sub);
            let message = if path.is_empty() {
                e.kind.to_string()
            } else {
                format!("`{}`: {}", dotted(&path), e.kind)
            };
            self.source.error_at(&path, e.is_unknown_field(), message)
        })
    }

    /// An error about key `sub` of this section (dotted, relative; empty:
    /// the section itself), located at its value.
    pub fn error(&self, sub: &str, message: impl Into<String>) -> ConfigError {
        let path = self.full_path(&split_key(sub));
        self.source.error_at(&path, false, message.into())
    }

    /// The error for a value out of range: "`key` = value is out of range
    /// (allowed: ...)".
    pub fn out_of_range(
        &self,
        sub: &str,
        value: impl fmt::Display,
        allowed: impl fmt::Display,
    ) -> ConfigError {
        let key = dotted(&self.full_path(&split_key(sub)));
        self.error(
            sub,
            format!("`{key}` = {value} is out of range (allowed: {allowed})"),
        )
    }

    /// The section as TOML text (for plugins, which take their settings as
    /// text).
    pub fn to_toml_string(&self) -> String {
        match &self.value {
            toml::Value::Table(t) => toml::to_string(t).unwrap_or_default(),
            other => other.to_string(),
        }
    }
}

/// "`a`, `b`, `c`": names for an "allowed:" list.
pub fn backticked<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> String {
    names
        .into_iter()
        .map(|n| format!("`{}`", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_point_at_keys_and_values() {
        let src = Source::new("f.toml", "a = 1\n[b]\nc = { d = [1, 2], e = \"x\" }\n");
        let doc = src.parse().unwrap();
        let sec = Section::new(&src, vec!["b".into()], doc.get("b").cloned());
        let e = sec.error("c.e", "bad");
        assert_eq!(e.location, ":3:23");
        assert_eq!(e.key.as_deref(), Some("b.c.e"));
        let e = sec.error("c.d.1", "bad");
        assert_eq!(e.location, ":3:15");
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct C {
            d: Vec<u8>,
        }
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct B {
            c: C,
        }
        let e = sec.parse::<B>().unwrap_err();
        assert_eq!(e.key.as_deref(), Some("b.c.e"));
        assert_eq!(e.location, ":3:19", "{e}");
        assert!(e.message.contains("unknown field `e`"), "{e}");
        let e = src
            .parse()
            .map(|_| ())
            .and(Source::new("g.toml", "a = [\n").parse().map(|_| ()));
        assert!(e.unwrap_err().location.starts_with(":"));
    }

    #[test]
    fn origins_redirect_flattened_keys() {
        let src = Source::new("f.toml", "[x]\nkind = \"s\"\np = 0\n");
        let doc = src.parse().unwrap();
        let mut t = toml::Table::new();
        t.insert("p".into(), doc["x"]["p"].clone());
        let sec = Section::new(&src, split_key("x.s"), Some(toml::Value::Table(t)))
            .with_origin("p", split_key("x.p"));
        let e = sec.out_of_range("p", 0, "at least 1");
        assert_eq!(e.location, ":3:5");
        assert!(e.message.contains("`x.p` = 0 is out of range"), "{e}");
    }
}
