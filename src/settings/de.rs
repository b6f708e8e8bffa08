//! A serde deserializer over a parsed `toml::Value` that keeps the key path
//! of every error as data.
//!
//! `toml`'s own value deserializer reports a nested error only as rendered
//! text. This one tracks the path while it descends (table keys and array
//! indices) and records unknown fields and variants with their names, so
//! that callers can point at the offending key's line and column without
//! reading any message.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use std::fmt;

/// What went wrong while reading a value.
#[derive(Debug, Clone, PartialEq)]
pub enum DeErrorKind {
    /// A key the target type does not have.
    UnknownField {
        /// The key as written.
        field: String,
        /// The keys the type takes.
        expected: Vec<String>,
    },
    /// A string naming no variant of an enum.
    UnknownVariant {
        /// The string as written.
        variant: String,
        /// The variants the enum has.
        expected: Vec<String>,
    },
    /// Any other problem (wrong type, missing field, out of range), as serde
    /// words it.
    Message(String),
}

/// An error at a key path inside the value being read.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    /// Keys (and array indices) from the value's root to the offending
    /// value; for an unknown field, to the table holding it.
    pub path: Vec<String>,
    /// What is wrong.
    pub kind: DeErrorKind,
}

impl DeError {
    fn within(mut self, key: String) -> Self {
        self.path.insert(0, key);
        self
    }

    /// The path of the offending key itself: for an unknown field, the
    /// table's path plus the field.
    pub fn key_path(&self) -> Vec<String> {
        let mut p = self.path.clone();
        if let DeErrorKind::UnknownField { field, .. } = &self.kind {
            p.push(field.clone());
        }
        p
    }

    /// Whether the error is about a key that should not be there (its
    /// location is the key, not a value).
    pub fn is_unknown_field(&self) -> bool {
        matches!(self.kind, DeErrorKind::UnknownField { .. })
    }
}

/// serde's wording of a list of allowed names.
pub(crate) fn one_of(names: &[String]) -> String {
    match names {
        [] => "there are none".to_string(),
        [one] => format!("expected `{one}`"),
        many => format!(
            "expected one of {}",
            many.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl fmt::Display for DeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeErrorKind::UnknownField { field, expected } => {
                write!(f, "unknown field `{field}`, {}", one_of(expected))
            }
            DeErrorKind::UnknownVariant { variant, expected } => {
                write!(f, "unknown variant `{variant}`, {}", one_of(expected))
            }
            DeErrorKind::Message(m) => f.write_str(m),
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "`{}`: {}", self.path.join("."), self.kind)
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            path: Vec::new(),
            kind: DeErrorKind::Message(msg.to_string()),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            path: Vec::new(),
            kind: DeErrorKind::UnknownField {
                field: field.to_string(),
                expected: expected.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            path: Vec::new(),
            kind: DeErrorKind::UnknownVariant {
                variant: variant.to_string(),
                expected: expected.iter().map(|s| s.to_string()).collect(),
            },
        }
    }
}

/// Reads a `T` from `value`; errors carry their key path.
pub fn from_value<'a, T: de::Deserialize<'a>>(value: &'a toml::Value) -> Result<T, DeError> {
    T::deserialize(ValueDeserializer(value))
}

/// The deserializer (see the module documentation).
#[derive(Clone, Copy)]
pub struct ValueDeserializer<'a>(pub &'a toml::Value);

impl<'de> de::Deserializer<'de> for ValueDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            toml::Value::String(s) => visitor.visit_borrowed_str(s),
            toml::Value::Integer(i) => visitor.visit_i64(*i),
            toml::Value::Float(x) => visitor.visit_f64(*x),
            toml::Value::Boolean(b) => visitor.visit_bool(*b),
            toml::Value::Datetime(d) => visitor.visit_string(d.to_string()),
            toml::Value::Array(a) => visitor.visit_seq(Seq {
                items: a.iter().enumerate(),
            }),
            toml::Value::Table(t) => visitor.visit_map(Map {
                entries: t.iter(),
                pending: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            toml::Value::String(s) => {
                visitor.visit_enum(IntoDeserializer::<DeError>::into_deserializer(s.as_str()))
            }
            toml::Value::Table(t) if t.len() == 1 => {
                let (k, v) = t.iter().next().expect("one entry");
                visitor.visit_enum(Variant { key: k, value: v })
            }
            _ => Err(de::Error::invalid_type(unexpected(self.0), &visitor)),
        }
    }

    /// A struct (a section, a table of settings) is read from a table only:
    /// serde would also fill one from an array by position, so that
    /// `data = ["digits"]` read as `[data] dataset = "digits"`.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            toml::Value::Table(_) => self.deserialize_any(visitor),
            other => Err(de::Error::invalid_type(unexpected(other), &"a table")),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

fn unexpected(v: &toml::Value) -> de::Unexpected<'_> {
    match v {
        toml::Value::String(s) => de::Unexpected::Str(s),
        toml::Value::Integer(i) => de::Unexpected::Signed(*i),
        toml::Value::Float(f) => de::Unexpected::Float(*f),
        toml::Value::Boolean(b) => de::Unexpected::Bool(*b),
        toml::Value::Datetime(_) => de::Unexpected::Other("a date-time"),
        toml::Value::Array(_) => de::Unexpected::Seq,
        toml::Value::Table(_) => de::Unexpected::Map,
    }
}

struct Seq<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, toml::Value>>,
}

impl<'de> de::SeqAccess<'de> for Seq<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some((i, v)) => seed
                .deserialize(ValueDeserializer(v))
                .map(Some)
                .map_err(|e| e.within(i.to_string())),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map<'a> {
    entries: toml::map::Iter<'a, String, toml::Value>,
    pending: Option<(&'a String, &'a toml::Value)>,
}

impl<'de> de::MapAccess<'de> for Map<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((k, v)) => {
                self.pending = Some((k, v));
                seed.deserialize(IntoDeserializer::<DeError>::into_deserializer(k.as_str()))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (k, v) = self
            .pending
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("a value without a key"))?;
        seed.deserialize(ValueDeserializer(v))
            .map_err(|e| e.within(k.clone()))
    }
}

struct Variant<'a> {
    key: &'a String,
    value: &'a toml::Value,
}

impl<'de> de::EnumAccess<'de> for Variant<'de> {
    type Error = DeError;
    type Variant = VariantValue<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), DeError> {
        let tag = seed.deserialize(IntoDeserializer::<DeError>::into_deserializer(
            self.key.as_str(),
        ))?;
        Ok((
            tag,
            VariantValue {
                key: self.key,
                value: self.value,
            },
        ))
    }
}

struct VariantValue<'a> {
    key: &'a String,
    value: &'a toml::Value,
}

impl<'de> de::VariantAccess<'de> for VariantValue<'de> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Err(<DeError as de::Error>::custom(format!(
            "`{}` takes no value",
            self.key
        )))
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(ValueDeserializer(self.value))
            .map_err(|e| e.within(self.key.clone()))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_any(ValueDeserializer(self.value), visitor)
            .map_err(|e| e.within(self.key.clone()))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_any(ValueDeserializer(self.value), visitor)
            .map_err(|e| e.within(self.key.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        n: usize,
        #[serde(default)]
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Fast,
        Slow,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        inner: Vec<Inner>,
        x: f64,
    }

    fn parse(text: &str) -> Result<Outer, DeError> {
        let v: toml::Value = toml::Value::Table(toml::from_str(text).unwrap());
        from_value(&v)
    }

    #[test]
    fn a_struct_is_read_from_a_table_only() {
        // Found by tests/fuzz_experiment.rs: serde fills a struct from an
        // array by position, so `data = ["digits"]` was read as a section.
        let e = parse("x = 1.0\ninner = [[3]]\n").unwrap_err();
        assert_eq!(e.path, ["inner", "0"]);
        assert!(e.to_string().contains("expected a table"), "{e}");
    }

    #[test]
    fn values_are_read() {
        let o = parse("x = 2\n[[inner]]\nn = 3\nmode = \"slow\"\n").unwrap();
        assert_eq!(o.x, 2.0);
        assert_eq!(
            o.inner,
            vec![Inner {
                n: 3,
                mode: Some(Mode::Slow)
            }]
        );
    }

    #[test]
    fn errors_carry_the_key_path_as_data() {
        let e = parse("x = 1.0\n[[inner]]\nn = 1\n[[inner]]\nn = \"4\"\n").unwrap_err();
        assert_eq!(e.path, vec!["inner", "1", "n"]);
        assert!(e.to_string().contains("invalid type"), "{e}");

        let e = parse("x = 1.0\n[[inner]]\nn = 1\nnn = 2\n").unwrap_err();
        assert_eq!(e.path, vec!["inner", "0"]);
        assert_eq!(e.key_path(), vec!["inner", "0", "nn"]);
        match &e.kind {
            DeErrorKind::UnknownField { field, expected } => {
                assert_eq!(field, "nn");
                assert_eq!(expected, &["n", "mode"]);
            }
            other => panic!("{other:?}"),
        }

        let e = parse("x = 1.0\n[[inner]]\nn = 1\nmode = \"medium\"\n").unwrap_err();
        assert_eq!(e.path, vec!["inner", "0", "mode"]);
        assert!(matches!(
            &e.kind,
            DeErrorKind::UnknownVariant { variant, .. } if variant == "medium"
        ));

        let e = parse("x = -1\ninner = []\nextra = 1\n").unwrap_err();
        assert_eq!(e.key_path(), vec!["extra"]);
        let e = parse("inner = []\n").unwrap_err();
        assert!(e.to_string().contains("missing field `x`"), "{e}");
    }
}
