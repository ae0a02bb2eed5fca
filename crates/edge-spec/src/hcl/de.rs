//! The value an HCL job file stands for before serde reads it: the serde form
//! of a job, each value keeping where it was written and its dotted field
//! name, and a serde `Deserializer` over it that applies HCL's conversions
//! (numbers and bools where a string is wanted, numeric strings where a
//! number is), so HCL and JSON decode through the same types.

use super::expr;
use crate::duration;
use crate::error::{Location, SpecError};
use ::hcl::{Number, Value};
use serde::de::{
    self, DeserializeSeed, Error as _, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde_path_to_error::Segment;

#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) kind: Kind,
    /// Where the value is written: a type error points here.
    pub(super) at: Location,
    /// Where its name is written: a warning about the name points here.
    pub(super) key_at: Location,
    /// Dotted path in diagnostics, e.g. `job.web.group.app.count`.
    pub(super) field: String,
    /// Written as a block rather than an attribute.
    pub(super) block: bool,
}

#[derive(Debug, Clone)]
pub(super) enum Kind {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    pub(super) fn new(kind: Kind, at: &Location, key_at: &Location, field: &str) -> Node {
        Node {
            kind,
            at: at.clone(),
            key_at: key_at.clone(),
            field: field.to_string(),
            block: false,
        }
    }

    /// An evaluated attribute; its parts share its place.
    pub(super) fn value(v: Value, at: &Location, key_at: &Location, field: &str) -> Node {
        let kind = match v {
            Value::Null => Kind::Null,
            Value::Bool(b) => Kind::Bool(b),
            Value::Number(n) => Kind::Number(n),
            Value::String(s) => Kind::String(s),
            Value::Array(items) => Kind::List(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| Node::value(v, at, key_at, &format!("{field}[{i}]")))
                    .collect(),
            ),
            Value::Object(o) => Kind::Map(
                o.into_iter()
                    .map(|(k, v)| {
                        let item = Node::value(v, at, key_at, &format!("{field}.{k}"));
                        (k, item)
                    })
                    .collect(),
            ),
        };
        Node::new(kind, at, key_at, field)
    }

    /// `self` inside a new node at the same place, e.g. a list of one.
    pub(super) fn wrap(self, outer: impl FnOnce(Node) -> Kind) -> Node {
        let mut node = Node {
            kind: Kind::Null,
            at: self.at.clone(),
            key_at: self.key_at.clone(),
            field: self.field.clone(),
            block: self.block,
        };
        node.kind = outer(self);
        node
    }

    pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match &mut self.kind {
            Kind::Map(entries) => entries.iter_mut().find(|(k, _)| k == key).map(|(_, n)| n),
            _ => None,
        }
    }

    pub(super) fn has(&self, key: &str) -> bool {
        matches!(&self.kind, Kind::Map(entries) if entries.iter().any(|(k, _)| k == key))
    }

    pub(super) fn insert(&mut self, key: &str, node: Node) {
        if let Kind::Map(entries) = &mut self.kind {
            entries.retain(|(k, _)| k != key);
            entries.push((key.to_string(), node));
        }
    }

    pub(super) fn remove(&mut self, key: &str) -> Option<Node> {
        let Kind::Map(entries) = &mut self.kind else {
            return None;
        };
        let i = entries.iter().position(|(k, _)| k == key)?;
        Some(entries.remove(i).1)
    }

    /// Removes what an error's path points at, or its deepest ancestor in
    /// the tree when the path goes further; the root itself stays.
    pub(super) fn take(&mut self, path: &[Segment]) -> Option<Node> {
        let (first, rest) = path.split_first()?;
        let i = match (&self.kind, first) {
            (Kind::List(items), Segment::Seq { index }) if *index < items.len() => *index,
            (Kind::Map(entries), Segment::Map { key }) => {
                entries.iter().position(|(k, _)| k == key)?
            }
            _ => return None,
        };
        match &mut self.kind {
            Kind::List(items) => items[i].take(rest).or_else(|| Some(items.remove(i))),
            Kind::Map(entries) => entries[i]
                .1
                .take(rest)
                .or_else(|| Some(entries.remove(i).1)),
            _ => None,
        }
    }

    pub(super) fn as_bool(&self) -> Option<bool> {
        match &self.kind {
            Kind::Bool(b) => Some(*b),
            Kind::String(s) if s == "true" => Some(true),
            Kind::String(s) if s == "false" => Some(false),
            _ => None,
        }
    }

    /// A short description for error messages.
    pub(super) fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "null".to_string(),
            Kind::Bool(b) => format!("bool {b}"),
            Kind::Number(n) => format!("number {n}"),
            Kind::String(s) => format!("string {s:?}"),
            Kind::List(_) => "a list".to_string(),
            Kind::Map(_) => "an object".to_string(),
        }
    }
}

/// Reads a [`Node`] as serde asks for it.
pub(super) struct De<'a>(pub(super) &'a Node);

impl De<'_> {
    fn expected(&self, what: &str) -> SpecError {
        SpecError::custom(format!("expected {what}, got {}", self.0.describe()))
    }

    fn whole<'de, V: Visitor<'de>>(self, max: u64, visitor: V) -> Result<V::Value, SpecError> {
        let n = match &self.0.kind {
            Kind::Number(n) => expr::as_u64(&Value::Number(*n)),
            Kind::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        match n {
            Some(n) if n <= max => visitor.visit_u64(n),
            _ => Err(self.expected(&format!("a whole number from 0 to {max}"))),
        }
    }
}

impl<'de> de::Deserializer<'de> for De<'_> {
    type Error = SpecError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SpecError> {
        match &self.0.kind {
            Kind::Null => visitor.visit_unit(),
            Kind::Bool(b) => visitor.visit_bool(*b),
            Kind::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => visitor.visit_u64(u),
                (None, Some(i), _) => visitor.visit_i64(i),
                (None, None, f) => visitor.visit_f64(f.unwrap_or(f64::NAN)),
            },
            Kind::String(s) => visitor.visit_str(s),
            Kind::List(items) => visitor.visit_seq(Items(items.iter())),
            Kind::Map(entries) => visitor.visit_map(Entries {
                iter: entries.iter(),
                value: None,
            }),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SpecError> {
        match self.0.as_bool() {
            Some(b) => visitor.visit_bool(b),
            None => Err(self.expected("true or false")),
        }
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SpecError> {
        self.whole(u64::from(u8::MAX), visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SpecError> {
        self.whole(u64::from(u16::MAX), visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SpecError> {
        self.whole(u64::from(u32::MAX), visitor)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SpecError> {
        self.whole(u64::MAX, visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SpecError> {
        match &self.0.kind {
            Kind::String(s) => visitor.visit_str(s),
            Kind::Number(n) => visitor.visit_string(n.to_string()),
            Kind::Bool(b) => visitor.visit_string(b.to_string()),
            _ => Err(self.expected("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SpecError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SpecError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SpecError> {
        match &self.0.kind {
            Kind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, SpecError> {
        // A bare number is seconds to some and Nomad's nanoseconds to others:
        // HCL durations are written with their unit.
        if name == duration::NAME && !matches!(self.0.kind, Kind::String(_)) {
            return Err(self.expected("a duration such as \"10s\""));
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SpecError> {
        match &self.0.kind {
            Kind::List(items) => visitor.visit_seq(Items(items.iter())),
            _ => Err(self.expected("a list")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, SpecError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, SpecError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SpecError> {
        match &self.0.kind {
            Kind::Map(entries) => visitor.visit_map(Entries {
                iter: entries.iter(),
                value: None,
            }),
            _ => Err(self.expected("a block or an object")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, SpecError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, SpecError> {
        match &self.0.kind {
            Kind::String(s) => {
                visitor.visit_enum(IntoDeserializer::<SpecError>::into_deserializer(s.as_str()))
            }
            _ => Err(self.expected("a string")),
        }
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u128 f32 f64 char bytes byte_buf unit unit_struct ignored_any
    }
}

struct Items<'a>(std::slice::Iter<'a, Node>);

impl<'de> SeqAccess<'de> for Items<'_> {
    type Error = SpecError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, SpecError> {
        self.0.next().map(|n| seed.deserialize(De(n))).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries<'a> {
    iter: std::slice::Iter<'a, (String, Node)>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = SpecError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, SpecError> {
        let Some((key, node)) = self.iter.next() else {
            return Ok(None);
        };
        self.value = Some(node);
        seed.deserialize(IntoDeserializer::<SpecError>::into_deserializer(
            key.as_str(),
        ))
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, SpecError> {
        match self.value.take() {
            Some(node) => seed.deserialize(De(node)),
            None => Err(SpecError::custom("a value without a key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}
