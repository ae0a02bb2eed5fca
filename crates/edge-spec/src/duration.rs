//! Serde helpers for durations: written as human strings ("10s", "1m30s"),
//! read from such strings or, in JSON, from integer nanoseconds (Nomad's JSON
//! form).

use crate::limits::{MAX_POLICY_WAIT, MAX_TASK_WAIT};
use schemars::{Schema, SchemaGenerator, json_schema};
use serde::de::Visitor;
use serde::{Deserializer, Serializer};
use std::fmt;
use std::time::Duration;

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// The newtype name durations are read under. A reader for a format in which
/// a bare number is ambiguous (HCL: seconds, or Nomad's nanoseconds?) sees it
/// and asks for a unit instead.
pub(crate) const NAME: &str = "edge_spec::duration";

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_newtype_struct(NAME, DurationVisitor)
}

struct DurationVisitor;

impl<'de> Visitor<'de> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"10s\", or whole nanoseconds")
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Duration, E> {
        Ok(Duration::from_nanos(n))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
        parse(text).map_err(E::custom)
    }
}

/// Parses "250ms", "10s", "1h30m". A bare number is taken as seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t).map_err(|e| format!("invalid duration {t:?}: {e}"))
}

pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

/// The units [`parse`] knows (humantime's), longest spelling first so that a
/// pattern built from them reads "10ms" as one item.
const UNITS: &[&str] = &[
    "nanos", "nsec", "ns", "usec", "us", "µs", "millis", "msec", "ms", "seconds", "second", "secs",
    "sec", "s", "minutes", "minute", "mins", "min", "m", "hours", "hour", "hrs", "hr", "h", "days",
    "day", "d", "weeks", "week", "wks", "wk", "w", "months", "month", "M", "years", "year", "yrs",
    "yr", "y",
];

/// The JSON Schema of a duration field up to `max`: a string as [`parse`]
/// reads it (bare seconds, or numbers with units such as "1h30m", which is
/// also how durations are written back) or integer nanoseconds.
fn schema(max: Duration) -> Schema {
    let max_nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    let units = UNITS.join("|");
    let pattern = format!(r"^\s*([0-9]+|([0-9]+(\.[0-9]+)?\s*({units})\s*)+)$");
    json_schema!({
        "anyOf": [
            {"type": "string", "pattern": pattern, "example": "10s"},
            {"type": "integer", "minimum": 0, "maximum": max_nanos},
        ]
    })
}

/// A wait within one run of a task, at most [`MAX_TASK_WAIT`].
pub fn task_wait_schema(_: &mut SchemaGenerator) -> Schema {
    schema(MAX_TASK_WAIT)
}

/// A window or delay of a restart or reschedule policy, at most
/// [`MAX_POLICY_WAIT`].
pub fn policy_wait_schema(_: &mut SchemaGenerator) -> Schema {
    schema(MAX_POLICY_WAIT)
}

/// A policy wait that may be left out (`Option<PolicyWait>`): written and
/// read like the module's durations, with [`policy_wait_schema`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyWait(pub Duration);

impl serde::Serialize for PolicyWait {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize(&self.0, s)
    }
}

impl<'de> serde::Deserialize<'de> for PolicyWait {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PolicyWait, D::Error> {
        deserialize(d).map(PolicyWait)
    }
}

impl schemars::JsonSchema for PolicyWait {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PolicyWait".into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        policy_wait_schema(g)
    }
}
