//! Field paths (`credentials[1].ips[2]`) and finding where such a path sits in the YAML source.
//!
//! `yaml_serde` gives values no spans, but it does stamp every error raised while a node is being
//! deserialized with that node's position. [`locate`] uses exactly that: it walks the document
//! along the path and deliberately fails on the target node, then reads the position off the
//! error. This is exact for block and flow style alike, and costs one re-parse per reported
//! problem (only on the error path).

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use super::error::Location;

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// A mapping key.
    Key(&'static str),
    /// A sequence index.
    Index(usize),
}

/// A path to a value in the config document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// The document root.
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// This path extended by a key.
    pub fn key(&self, key: &'static str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key));
        FieldPath(segments)
    }

    /// This path extended by an index.
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        FieldPath(segments)
    }

    /// The path one step up, `None` at the root.
    fn parent(&self) -> Option<Self> {
        let (_, rest) = self.0.split_last()?;
        Some(FieldPath(rest.to_vec()))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if position == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Where `path` sits in `source`. When the path does not exist (a missing key), the nearest
/// existing ancestor is reported, which is where the key has to be added. When not even the
/// root can be walked (a document that is a tagged scalar such as `!!int`), the problem is the
/// document as a whole, and its start is reported.
pub fn locate(source: &str, path: &FieldPath) -> Option<Location> {
    let mut current = Some(path.clone());
    while let Some(path) = current {
        if let Some(location) = locate_exact(source, &path.0) {
            return Some(location);
        }
        current = path.parent();
    }
    Some(Location { line: 1, column: 1 })
}

/// The error message used to stop at the target; anything else means the walk itself failed.
const FOUND: &str = "bunq-ipsync: located";

fn locate_exact(source: &str, path: &[Segment]) -> Option<Location> {
    let deserializer = yaml_serde::Deserializer::from_str(source);
    let error = Walk { path }.deserialize(deserializer).err()?;
    if !error.to_string().contains(FOUND) {
        return None;
    }
    let location = error.location()?;
    Some(Location {
        line: location.line(),
        column: location.column(),
    })
}

/// Walks one step of the path per nesting level; at the end of the path it fails on purpose.
struct Walk<'p> {
    path: &'p [Segment],
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        let Segment::Index(wanted) = first else {
            return Ok(());
        };
        let mut index = 0;
        loop {
            if index == *wanted {
                seq.next_element_seed(Walk { path: rest })?;
                return Ok(());
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        let Segment::Key(wanted) = first else {
            return Ok(());
        };
        while let Some(key) = map.next_key::<KeyText>()? {
            if key.0.as_deref() == Some(*wanted) {
                return map.next_value_seed(Walk { path: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    /// A YAML tag (`!x`) reaches a visitor as an enum whose variant is the tag: walk through it
    /// into the tagged value, so fields under a tagged node keep their locations.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let (_tag, value) = data.variant::<IgnoredAny>()?;
        value.newtype_variant_seed(self)
    }
}

impl Walk<'_> {
    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

/// A mapping key as text; non-text keys never match a path.
struct KeyText(Option<String>);

impl<'de> de::Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<KeyText, E> {
                Ok(KeyText(Some(value.to_owned())))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }

            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyText, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyText, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
        }

        deserializer.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "\
bunq:
  environment: sandbox
credentials:
  - id: 1
    ips:
      - 203.0.113.10
      - 2001:db8::1
  - id: 2
    ips: [192.0.2.1, 192.0.2.2]
    protected: []
";

    fn at(line: usize, column: usize) -> Option<Location> {
        Some(Location { line, column })
    }

    fn ips(credential: usize) -> FieldPath {
        FieldPath::root()
            .key("credentials")
            .index(credential)
            .key("ips")
    }

    #[test]
    fn path_displays_like_an_accessor() {
        assert_eq!(ips(1).index(2).to_string(), "credentials[1].ips[2]");
        assert_eq!(
            FieldPath::root().key("sync").key("policy").to_string(),
            "sync.policy"
        );
    }

    #[test]
    fn block_sequence_item_is_located_at_its_value() {
        assert_eq!(locate(SOURCE, &ips(0).index(1)), at(7, 9));
    }

    #[test]
    fn flow_sequence_item_is_located_at_its_value() {
        assert_eq!(locate(SOURCE, &ips(1).index(1)), at(9, 22));
    }

    #[test]
    fn scalar_mapping_value_is_located() {
        let path = FieldPath::root().key("credentials").index(1).key("id");
        assert_eq!(locate(SOURCE, &path), at(8, 9));
    }

    #[test]
    fn empty_flow_sequence_is_located() {
        let path = FieldPath::root()
            .key("credentials")
            .index(1)
            .key("protected");
        assert_eq!(locate(SOURCE, &path), at(10, 16));
    }

    #[test]
    fn missing_key_falls_back_to_the_enclosing_mapping() {
        let path = FieldPath::root().key("bunq").key("base_url");
        assert_eq!(locate(SOURCE, &path), at(2, 3));
    }

    #[test]
    fn index_past_the_end_falls_back_to_the_sequence() {
        assert_eq!(locate(SOURCE, &ips(0).index(9)), at(6, 7));
    }
}
