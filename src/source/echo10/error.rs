//! What can go wrong reading ECHO10.

use std::fmt;

/// An ECHO10 record or results page that cannot be used.
///
/// `granule` is the record's `GranuleUR` when it was read before the problem was found.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Echo10Error {
    /// The bytes are not well-formed XML (or not UTF-8).
    #[error("{}: malformed XML at byte {position}: {source}", Who(.granule))]
    Xml {
        /// `GranuleUR`, if known.
        granule: Option<String>,
        /// Byte offset of the problem in the input.
        position: u64,
        /// The XML reader's error.
        source: quick_xml::Error,
    },
    /// An entity reference other than the predefined ones and character references.
    #[error("{}: unknown entity reference &{entity}; at byte {position}", Who(.granule))]
    Entity {
        /// `GranuleUR`, if known.
        granule: Option<String>,
        /// Byte offset of the reference.
        position: u64,
        /// The reference, without `&` and `;`.
        entity: String,
    },
    /// The input ended inside an element.
    #[error("{}: truncated input: ends inside <{inside}>", Who(.granule))]
    Truncated {
        /// `GranuleUR`, if known.
        granule: Option<String>,
        /// The innermost element the input ended in.
        inside: &'static str,
    },
    /// An element where another one was expected (e.g. a root other than `<Granule>`).
    #[error("{}: expected <{expected}>, found {found}", Who(.granule))]
    Unexpected {
        /// `GranuleUR`, if known.
        granule: Option<String>,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// A required value is absent (or empty).
    #[error("{}: missing required {field}", Who(.granule))]
    Missing {
        /// `GranuleUR`, if known.
        granule: Option<String>,
        /// The missing element or attribute.
        field: &'static str,
    },
    /// A required value is present but unusable.
    #[error("{}: invalid {field} {value:?}: {reason}", Who(.granule))]
    Invalid {
        /// `GranuleUR`, if known.
        granule: Option<String>,
        /// The element or attribute.
        field: &'static str,
        /// Its value (clipped to 120 characters).
        value: String,
        /// Why it is unusable.
        reason: &'static str,
    },
    /// The record's collection (from its `GranuleUR`) disagrees with another statement of it.
    #[error(
        "{}: {field} {value:?} contradicts the collection {collection} of its GranuleUR",
        Who(.granule)
    )]
    CollectionMismatch {
        /// `GranuleUR`, if known.
        granule: Option<String>,
        /// Where the other statement is (`DataSetId`, `ShortName`, `collection-concept-id`).
        field: &'static str,
        /// What it says.
        value: String,
        /// The collection of the `GranuleUR` prefix.
        collection: crate::Collection,
    },
    /// CMR answered with an `<errors>` document instead of results.
    #[error("CMR error: {message}")]
    Cmr {
        /// The `<error>` messages, joined with `; `.
        message: String,
    },
}

impl Echo10Error {
    /// Moves the byte offset of the problem (if it has one) by `by`: for an error found in
    /// a part of the input that started `by` bytes into it.
    pub(crate) fn offset_position(&mut self, by: u64) {
        if let Echo10Error::Xml { position, .. } | Echo10Error::Entity { position, .. } = self {
            *position += by;
        }
    }

    /// The `GranuleUR` of the record the error is about, if known.
    pub fn granule(&self) -> Option<&str> {
        match self {
            Echo10Error::Xml { granule, .. }
            | Echo10Error::Entity { granule, .. }
            | Echo10Error::Truncated { granule, .. }
            | Echo10Error::Unexpected { granule, .. }
            | Echo10Error::Missing { granule, .. }
            | Echo10Error::Invalid { granule, .. }
            | Echo10Error::CollectionMismatch { granule, .. } => granule.as_deref(),
            Echo10Error::Cmr { .. } => None,
        }
    }
}

/// Clips a value quoted in an error to 120 characters.
pub(crate) fn clip(value: &str) -> String {
    const MAX: usize = 120;
    match value.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &value[..i]),
        None => value.to_string(),
    }
}

/// Displays "granule <id>" or "ECHO10 record".
struct Who<'a>(&'a Option<String>);

impl fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, "granule {id}"),
            None => f.write_str("ECHO10 record"),
        }
    }
}

impl Echo10Error {
    /// Fills in the granule id of an error found before the id was known.
    pub(crate) fn set_granule_if_unknown(&mut self, id: Option<&str>) {
        let slot = match self {
            Echo10Error::Xml { granule, .. }
            | Echo10Error::Entity { granule, .. }
            | Echo10Error::Truncated { granule, .. }
            | Echo10Error::Unexpected { granule, .. }
            | Echo10Error::Missing { granule, .. }
            | Echo10Error::Invalid { granule, .. }
            | Echo10Error::CollectionMismatch { granule, .. } => granule,
            Echo10Error::Cmr { .. } => return,
        };
        if slot.is_none() {
            *slot = id.map(str::to_string);
        }
    }
}
