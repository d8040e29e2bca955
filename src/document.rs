//! [`Document`]: a JSON document (an IAM policy, a Profile spec) kept as its
//! compact text. A leaf module.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// A JSON document kept as its compact text.
///
/// A `serde_json::Value` object is a `BTreeMap` whose every node is allocated
/// for 11 entries (about 640 bytes): a trust policy of five small objects
/// takes 3.6 KB as a value and 0.5 KB as text. Documents are parsed where they
/// are compared ([`Document::to_json`]); parsing one costs about what cloning
/// the value did, and the planner cloned each one to normalise it anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document(Box<str>);

impl Document {
    /// The document as a JSON value.
    pub fn to_json(&self) -> Json {
        serde_json::from_str(&self.0).expect("a Document holds valid JSON")
    }

    /// The compact JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Document {
    fn default() -> Self {
        Document("null".into())
    }
}

impl From<&Json> for Document {
    fn from(v: &Json) -> Self {
        Document(v.to_string().into_boxed_str())
    }
}

impl From<Json> for Document {
    fn from(v: Json) -> Self {
        Document::from(&v)
    }
}

impl Serialize for Document {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Json::deserialize(d).map(Document::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_json_not_as_a_string() {
        let d = Document::from(serde_json::json!({"b": [1], "a": "x"}));
        assert_eq!(d.as_str(), r#"{"a":"x","b":[1]}"#);
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(text, r#"{"a":"x","b":[1]}"#);
        assert_eq!(serde_json::from_str::<Document>(&text).unwrap(), d);
    }
}
