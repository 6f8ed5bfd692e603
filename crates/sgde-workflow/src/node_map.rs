//! The map of nodes keyed by id, which remembers duplicate keys instead of dropping them.
//!
//! JSON parsers keep the last of two equal keys without a word. A spec with two nodes called
//! `solve` is almost certainly a mistake (often a teacher's), so the map records the duplicates
//! it saw and validation reports them with their JSON pointer.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::schema::{AdditionalProperties, Object, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::spec::Node;

/// Nodes keyed by id, in id order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeMap {
    entries: BTreeMap<String, Node>,
    duplicates: Vec<String>,
}

impl NodeMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, id: &str) -> Option<&Node> {
        self.entries.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Node> {
        self.entries.get_mut(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.entries.contains_key(id)
    }

    /// Inserts or replaces a node; returns the previous one.
    pub fn insert(&mut self, id: impl Into<String>, node: Node) -> Option<Node> {
        self.entries.insert(id.into(), node)
    }

    pub fn remove(&mut self, id: &str) -> Option<Node> {
        self.entries.remove(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.entries.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Node)> {
        self.entries.iter_mut()
    }

    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keys that appeared more than once in the parsed JSON (the last one was kept).
    pub fn duplicates(&self) -> &[String] {
        &self.duplicates
    }
}

impl FromIterator<(String, Node)> for NodeMap {
    fn from_iter<T: IntoIterator<Item = (String, Node)>>(iter: T) -> Self {
        Self { entries: iter.into_iter().collect(), duplicates: Vec::new() }
    }
}

impl Serialize for NodeMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for NodeMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeMapVisitor;

        impl<'de> Visitor<'de> for NodeMapVisitor {
            type Value = NodeMap;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of nodes keyed by id")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<NodeMap, A::Error> {
                let mut map = NodeMap::new();
                while let Some((id, node)) = access.next_entry::<String, Node>()? {
                    if map.entries.insert(id.clone(), node).is_some() {
                        map.duplicates.push(id);
                    }
                }
                Ok(map)
            }
        }

        deserializer.deserialize_map(NodeMapVisitor)
    }
}

impl PartialSchema for NodeMap {
    fn schema() -> RefOr<Schema> {
        Object::builder()
            .schema_type(Type::Object)
            .description(Some("Nodes keyed by id."))
            .additional_properties(Some(AdditionalProperties::RefOr(RefOr::Ref(Ref::from_schema_name(
                Node::name(),
            )))))
            .into()
    }
}

impl ToSchema for NodeMap {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Node::name().into_owned(), Node::schema()));
        Node::schemas(schemas);
    }
}
