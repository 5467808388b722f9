//! Errors of the fast HLS write path.

/// Why an item could not go through the fast HLS write path, or why writing failed.
///
/// The shape errors ([`Json`](Self::Json), [`UnknownField`](Self::UnknownField),
/// [`UnknownProperty`](Self::UnknownProperty), [`UnknownAsset`](Self::UnknownAsset),
/// [`UnexpectedField`](Self::UnexpectedField), [`InvalidValue`](Self::InvalidValue)) mean that
/// the item is outside the fixed HLS shape: nothing of it was buffered, and the caller can
/// write the file with the generic writer ([`crate::write::stac_arrow`]) instead (see
/// [`is_shape_mismatch`](Self::is_shape_mismatch)).
#[derive(Debug, thiserror::Error)]
pub enum HlsArrowError {
    /// The JSON is malformed, or a field has the wrong JSON type.
    #[error("item {}: {source}", display_id(.id))]
    Json {
        /// The item id, when it could be read.
        id: Option<String>,
        /// The parser's error, with the path of the field and the position.
        source: serde_json::Error,
    },
    /// A top-level member that the HLS item shape does not have.
    #[error("item {}: unknown top-level field {field:?}", display_id(.id))]
    UnknownField {
        /// The item id, when it could be read.
        id: Option<String>,
        /// The member's name.
        field: String,
    },
    /// A property that the HLS item shape does not have.
    #[error("item {}: unknown property {key:?}", display_id(.id))]
    UnknownProperty {
        /// The item id, when it could be read.
        id: Option<String>,
        /// The property's name.
        key: String,
    },
    /// An asset key that this collection's items do not have.
    #[error("item {}: unknown asset {key:?} for {collection}", display_id(.id))]
    UnknownAsset {
        /// The item id, when it could be read.
        id: Option<String>,
        /// The asset key.
        key: String,
        /// The collection's STAC id.
        collection: &'static str,
    },
    /// A field the fixed schema has no column for at this place (e.g. a `common_name` on a
    /// band that has none, `eo:bands` on the thumbnail, an asset `title`).
    #[error("item {}: field {field} is outside the fixed HLS schema", display_id(.id))]
    UnexpectedField {
        /// The item id.
        id: Option<String>,
        /// The path of the field, e.g. `assets.B05.eo:bands[0].common_name`.
        field: String,
    },
    /// A value the fixed schema cannot hold, or that would not read back the same.
    #[error("item {}: {field}: {problem}", display_id(.id))]
    InvalidValue {
        /// The item id.
        id: Option<String>,
        /// The path of the field, e.g. `geometry.type`.
        field: String,
        /// What is wrong with it.
        #[source]
        problem: ValueProblem,
    },
    /// Building a record batch failed (a bug, or an Arrow limit).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// Writing Parquet failed (I/O included).
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Encoding the file metadata failed.
    #[error("metadata: {0}")]
    Metadata(#[source] serde_json::Error),
    /// Spilling sorted rows to the scratch folder, or reading them back, failed.
    #[error("spilling sorted rows to {}: {source}", .path.as_deref().map_or_else(|| "the temporary folder".to_string(), |p| p.display().to_string()))]
    Spill {
        /// The spill file, or the scratch folder it was to be created in.
        path: Option<std::path::PathBuf>,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What is wrong with a value ([`HlsArrowError::InvalidValue`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValueProblem {
    /// A required field that is absent.
    #[error("missing")]
    Missing,
    /// A required field that is absent or null.
    #[error("missing or null")]
    MissingOrNull,
    /// A field that is not the one value the shape allows, as read from JSON.
    #[error("expected {expected}, got {found:?}")]
    Other {
        /// What the shape allows (`"Feature"`, `"1.0.0" or "1.1.0"`).
        expected: &'static str,
        /// What the item has, if anything.
        found: Option<String>,
    },
    /// A geometry of another type than MultiPolygon.
    #[error("expected \"MultiPolygon\", got {0:?}")]
    GeometryType(&'static str),
    /// A value of the wrong JSON type (`a string`, `numbers`).
    #[error("expected {0}")]
    Kind(&'static str),
    /// An item of another collection than the file's.
    #[error("{found:?} is not {expected:?}")]
    OtherCollection {
        /// The item's collection.
        found: String,
        /// The file's collection.
        expected: &'static str,
    },
    /// A time that is not RFC 3339.
    #[error("not a datetime: {0:?}")]
    NotADatetime(String),
    /// A geometry that WKB cannot hold (empty, too many rings or points).
    #[error("{0}")]
    Rings(&'static str),
    /// A bbox that is not two-dimensional.
    #[error("{0} values, expected 4")]
    BboxLength(usize),
    /// A position that is not `[x, y]`.
    #[error("a position has {0} values, expected 2")]
    PositionLength(usize),
}

impl HlsArrowError {
    /// True when the item is outside the fixed HLS shape (so the generic `stac` writer is
    /// the way to write it), false for write failures.
    pub fn is_shape_mismatch(&self) -> bool {
        !matches!(
            self,
            HlsArrowError::Arrow(_)
                | HlsArrowError::Parquet(_)
                | HlsArrowError::Metadata(_)
                | HlsArrowError::Spill { .. }
        )
    }

    /// The id of the item the error is about, if known.
    pub fn item_id(&self) -> Option<&str> {
        match self {
            HlsArrowError::Json { id, .. }
            | HlsArrowError::UnknownField { id, .. }
            | HlsArrowError::UnknownProperty { id, .. }
            | HlsArrowError::UnknownAsset { id, .. }
            | HlsArrowError::UnexpectedField { id, .. }
            | HlsArrowError::InvalidValue { id, .. } => id.as_deref(),
            _ => None,
        }
    }
}

fn display_id(id: &Option<String>) -> &str {
    id.as_deref().unwrap_or("(unknown id)")
}

/// Result of the fast HLS write path.
pub type Result<T, E = HlsArrowError> = std::result::Result<T, E>;
