//! Which columns of a partition are written without a dictionary: those whose values are
//! (nearly) all different, judged on a sample of the month's first rows.
//!
//! A partition caps each column chunk's dictionary at [`DICTIONARY_BYTES`](super::DICTIONARY_BYTES):
//! a column of values unique to each item (ids, hrefs, times, footprints) fills it within a
//! few dozen rows and is written plain from there. But the dictionary page stays at the head
//! of the column chunk, and a reader of any row of the chunk decompresses and decodes it
//! first: a lookup by id, which keeps one row of a row group, read ~30 such pages of 4 KB
//! per row group for nothing (~10 % of its CPU, `cargo bench --bench query`). Those columns
//! are now plain from their first row; the others keep their capped dictionary.

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch, UInt32Array};
use arrow_schema::{ArrowError, DataType};
use parquet::schema::types::ColumnPath;
use std::collections::HashSet;

/// Rows of a month sampled, at most.
pub const SAMPLE_ROWS: usize = 1024;

/// The first rows of a month ([`SAMPLE_ROWS`] at most), copied out of the batches they came
/// in (a slice would keep a whole batch of the daily file alive).
#[derive(Debug, Default)]
pub struct Sample {
    rows: Option<RecordBatch>,
}

impl Sample {
    /// Takes rows of `batch` while the sample is not full.
    pub fn add(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        let have = self.rows.as_ref().map_or(0, RecordBatch::num_rows);
        let take = SAMPLE_ROWS.saturating_sub(have).min(batch.num_rows());
        if take == 0 {
            return Ok(());
        }
        let indices = UInt32Array::from_iter_values(0..take as u32);
        let copied = arrow_select::take::take_record_batch(batch, &indices)?;
        self.rows = Some(match self.rows.take() {
            None => copied,
            Some(rows) => arrow_select::concat::concat_batches(&rows.schema(), [&rows, &copied])?,
        });
        Ok(())
    }

    /// The leaf columns of the sample, as parquet names them (`assets.B01.href`,
    /// `links.list.item.href`), of which more than half the values present are different.
    pub fn distinct_columns(&self) -> Vec<ColumnPath> {
        let mut found = Vec::new();
        if let Some(rows) = &self.rows {
            for (field, column) in rows.schema().fields().iter().zip(rows.columns()) {
                leaves(vec![field.name().clone()], column.as_ref(), &mut found);
            }
        }
        found
    }
}

/// Adds the leaves of `array` (at `path`) whose values are mostly different to `found`.
fn leaves(path: Vec<String>, array: &dyn Array, found: &mut Vec<ColumnPath>) {
    let child = |name: &str| {
        let mut p = path.clone();
        p.push(name.to_string());
        p
    };
    match array.data_type() {
        DataType::Struct(fields) => {
            for (field, column) in fields.iter().zip(array.as_struct().columns()) {
                leaves(child(field.name()), column.as_ref(), found);
            }
        }
        // The parquet writer names a list's repeated group `list`, and its element as the
        // Arrow field does.
        DataType::List(field) => {
            let mut p = child("list");
            p.push(field.name().clone());
            leaves(p, array.as_list::<i32>().values().as_ref(), found);
        }
        DataType::LargeList(field) => {
            let mut p = child("list");
            p.push(field.name().clone());
            leaves(p, array.as_list::<i64>().values().as_ref(), found);
        }
        _ => {
            if mostly_distinct(array) {
                found.push(ColumnPath::new(path));
            }
        }
    }
}

/// Whether more than half the values present in `array` are different (a column of strings,
/// binaries or fixed-width values; `false` for other types, which keep their dictionary).
fn mostly_distinct(array: &dyn Array) -> bool {
    let present = array.len() - array.null_count();
    if present == 0 {
        return false;
    }
    let valid = |i: usize| array.is_valid(i);
    let distinct = match array.data_type() {
        DataType::Utf8 | DataType::Binary => {
            if let Some(s) = array.as_string_opt::<i32>() {
                count(s.len(), valid, |i| s.value(i).as_bytes())
            } else {
                let b = array.as_binary::<i32>();
                count(b.len(), valid, |i| b.value(i))
            }
        }
        DataType::LargeUtf8 | DataType::LargeBinary => {
            if let Some(s) = array.as_string_opt::<i64>() {
                count(s.len(), valid, |i| s.value(i).as_bytes())
            } else {
                let b = array.as_binary::<i64>();
                count(b.len(), valid, |i| b.value(i))
            }
        }
        DataType::FixedSizeBinary(_) => {
            let b = array.as_fixed_size_binary();
            count(b.len(), valid, |i| b.value(i))
        }
        t if t.is_primitive() => {
            let Some(width) = t.primitive_width() else {
                return false;
            };
            let data = array.to_data();
            let values = &data.buffers()[0].as_slice()[data.offset() * width..];
            count(array.len(), valid, |i| &values[i * width..(i + 1) * width])
        }
        _ => return false,
    };
    distinct * 2 > present
}

/// How many different values `value(i)` takes over the valid `i` below `len`.
fn count<'a>(
    len: usize,
    valid: impl Fn(usize) -> bool,
    value: impl Fn(usize) -> &'a [u8],
) -> usize {
    (0..len)
        .filter(|&i| valid(i))
        .map(value)
        .collect::<HashSet<&[u8]>>()
        .len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{ArrayRef, Float64Array, StringArray, StructArray};
    use arrow_schema::Field;
    use std::sync::Arc;

    fn paths(found: &[ColumnPath]) -> Vec<String> {
        found.iter().map(ColumnPath::string).collect()
    }

    /// Rows `from..to` of a month: unique ids and hrefs (nested in a struct and in a list),
    /// a repeated type, cloud cover of a few values, and a column of nulls.
    fn rows(from: usize, to: usize) -> RecordBatch {
        let ids = StringArray::from_iter_values((from..to).map(|i| format!("HLS.S30.T{i:05}")));
        let href: ArrayRef = Arc::new(StringArray::from_iter_values(
            (from..to).map(|i| format!("https://x/{i}.B01.tif")),
        ));
        let kind: ArrayRef = Arc::new(StringArray::from_iter_values(
            (from..to).map(|_| "image/tiff"),
        ));
        let asset = StructArray::from(vec![
            (Arc::new(Field::new("href", DataType::Utf8, true)), href),
            (Arc::new(Field::new("type", DataType::Utf8, true)), kind),
        ]);
        let mut links = ListBuilder::new(StringBuilder::new());
        for i in from..to {
            links.values().append_value(format!("https://x/{i}.json"));
            links.values().append_value("https://x/collection.json");
            links.append(true);
        }
        let cloud = Float64Array::from_iter_values((from..to).map(|i| (i % 5) as f64));
        let nothing = Float64Array::from_iter((from..to).map(|_| None::<f64>));
        RecordBatch::try_from_iter([
            ("id", Arc::new(ids) as ArrayRef),
            ("B01", Arc::new(asset)),
            ("links", Arc::new(links.finish())),
            ("eo:cloud_cover", Arc::new(cloud)),
            ("nothing", Arc::new(nothing)),
        ])
        .unwrap()
    }

    #[test]
    fn columns_of_values_unique_to_each_row_are_found_by_their_parquet_path() {
        let mut sample = Sample::default();
        sample.add(&rows(0, 300)).unwrap();
        // Half the links of a row are unique: 301 of 600 values.
        assert_eq!(
            paths(&sample.distinct_columns()),
            ["id", "B01.href", "links.list.item"]
        );
    }

    #[test]
    fn the_sample_takes_the_first_rows_of_several_batches_and_no_more() {
        let mut sample = Sample::default();
        assert!(sample.distinct_columns().is_empty());
        sample.add(&rows(0, 1000)).unwrap();
        sample.add(&rows(1000, 2000)).unwrap();
        sample.add(&rows(2000, 3000)).unwrap();
        let kept = sample.rows.as_ref().unwrap();
        assert_eq!(kept.num_rows(), SAMPLE_ROWS);
        let ids = kept.column(0).as_string::<i32>();
        assert_eq!(ids.value(999), "HLS.S30.T00999");
        assert_eq!(ids.value(1000), "HLS.S30.T01000");
        assert_eq!(
            paths(&sample.distinct_columns()),
            ["id", "B01.href", "links.list.item"]
        );
    }

    #[test]
    fn fixed_width_values_are_compared_within_the_slice_of_the_array() {
        // 50 different values, then 50 times the same one.
        let column = Float64Array::from_iter_values((0..100).map(|i| f64::from(i.min(50))));
        assert!(mostly_distinct(&column.slice(0, 50)));
        assert!(!mostly_distinct(&column.slice(50, 50)));
        assert!(mostly_distinct(&column));
        let column = Float64Array::from_iter_values((0..100).map(|i| f64::from(i.max(50))));
        assert!(!mostly_distinct(&column.slice(0, 50)));
        assert!(mostly_distinct(&column.slice(50, 50)));
    }
}
