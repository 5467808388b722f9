//! Column builders for the fixed HLS schema: [`HlsItem`]s in, [`RecordBatch`]es out.

use super::error::Result;
use super::item::{HlsAsset, HlsBand, HlsItem, HlsLink};
use super::schema::{self, AssetSlot};
use super::wkb;
use crate::Collection;
use arrow_array::builder::{
    BinaryBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
    StringDictionaryBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, DictionaryArray, Int32Array, ListArray, RecordBatch, StringArray, StructArray,
};
use arrow_buffer::{NullBufferBuilder, OffsetBufferBuilder};
use arrow_schema::{DataType, Field, FieldRef, Fields, SchemaRef};
use std::sync::Arc;

/// Buffers the rows of one record batch of a collection's items.
pub struct HlsBatchBuilder {
    schema: SchemaRef,
    collection_id: &'static str,
    stac_version: StringDictionaryBuilder<Int32Type>,
    slots: Vec<AssetSlot>,
    rows: usize,
    stac_extensions: ListBuilder<StringBuilder>,
    id: StringBuilder,
    bbox: BboxColumns,
    links: LinkColumns,
    assets: Vec<AssetColumns>,
    datetime: TimestampMicrosecondBuilder,
    start_datetime: TimestampMicrosecondBuilder,
    end_datetime: TimestampMicrosecondBuilder,
    platform: StringBuilder,
    instruments: ListBuilder<StringBuilder>,
    cloud_cover: Float64Builder,
    proj_transform: ListBuilder<Float64Builder>,
    proj_shape: ListBuilder<Int64Builder>,
    proj_epsg: Int64Builder,
    sun_azimuth: Float64Builder,
    view_azimuth: Float64Builder,
    sci_doi: StringBuilder,
    geometry: BinaryBuilder,
    wkb: Vec<u8>,
    bounds: Option<[f64; 4]>,
}

impl HlsBatchBuilder {
    /// An empty builder for the items of `collection`.
    pub fn new(collection: Collection) -> Self {
        let slots = schema::asset_slots(collection);
        let assets = slots.iter().map(AssetColumns::new).collect();
        let timestamp = || TimestampMicrosecondBuilder::new().with_timezone("UTC");
        HlsBatchBuilder {
            schema: schema::hls_schema(collection),
            collection_id: collection.stac_id(),
            stac_version: StringDictionaryBuilder::new(),
            slots,
            rows: 0,
            stac_extensions: ListBuilder::new(StringBuilder::new()),
            id: StringBuilder::new(),
            bbox: BboxColumns::default(),
            links: LinkColumns::default(),
            assets,
            datetime: timestamp(),
            start_datetime: timestamp(),
            end_datetime: timestamp(),
            platform: StringBuilder::new(),
            instruments: ListBuilder::new(StringBuilder::new()),
            cloud_cover: Float64Builder::new(),
            proj_transform: ListBuilder::new(Float64Builder::new()),
            proj_shape: ListBuilder::new(Int64Builder::new()),
            proj_epsg: Int64Builder::new(),
            sun_azimuth: Float64Builder::new(),
            view_azimuth: Float64Builder::new(),
            sci_doi: StringBuilder::new(),
            geometry: BinaryBuilder::new(),
            wkb: Vec::new(),
            bounds: None,
        }
    }

    /// The schema of the batches this builder makes.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The asset keys of this collection, in column order.
    pub(crate) fn slots(&self) -> &[AssetSlot] {
        &self.slots
    }

    /// The collection's STAC id, written into every row.
    pub(crate) fn collection_id(&self) -> &'static str {
        self.collection_id
    }

    /// Rows buffered since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no rows are buffered.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// `[minx, miny, maxx, maxy]` of every geometry appended so far (over all batches).
    pub fn bounds(&self) -> Option<[f64; 4]> {
        self.bounds
    }

    /// Appends one checked item as a row. Cannot fail: everything was checked before.
    pub(crate) fn append(&mut self, item: &HlsItem<'_>) {
        self.rows += 1;
        self.stac_version.append_value(item.stac_version);
        append_strs(&mut self.stac_extensions, item.stac_extensions.as_deref());
        self.id.append_value(&item.id);
        self.bbox.append(item.bbox);
        self.links.append(&item.links);
        for (columns, asset) in self.assets.iter_mut().zip(&item.assets) {
            columns.append(asset.as_ref());
        }
        self.datetime.append_option(item.datetime);
        self.start_datetime.append_option(item.start_datetime);
        self.end_datetime.append_option(item.end_datetime);
        self.platform.append_option(item.platform.as_deref());
        append_strs(&mut self.instruments, item.instruments.as_deref());
        self.cloud_cover.append_option(item.cloud_cover);
        append_values(&mut self.proj_transform, item.proj_transform.as_deref());
        append_values(&mut self.proj_shape, item.proj_shape.as_deref());
        self.proj_epsg.append_option(item.proj_epsg);
        self.sun_azimuth.append_option(item.sun_azimuth);
        self.view_azimuth.append_option(item.view_azimuth);
        self.sci_doi.append_option(item.sci_doi.as_deref());

        self.wkb.clear();
        let bounds = wkb::write_multipolygon(&mut self.wkb, &item.geometry);
        self.geometry.append_value(&self.wkb);
        self.bounds = crate::bbox::union_bounds(self.bounds, bounds);
    }

    /// Turns the buffered rows into a record batch and starts a new one.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let rows = std::mem::take(&mut self.rows);
        let schema = self.schema.clone();
        let field = |name: &str| -> Result<FieldRef> {
            Ok(Arc::new(schema.field_with_name(name)?.clone()))
        };
        // In the order of `schema::hls_schema`.
        let columns: Vec<ArrayRef> = vec![
            constant(rows, "Feature")?,
            Arc::new(self.stac_version.finish()),
            finish_list(&mut self.stac_extensions, &field("stac_extensions")?)?,
            Arc::new(self.id.finish()),
            Arc::new(self.sci_doi.finish()),
            Arc::new(self.view_azimuth.finish()),
            self.links.finish(&field("links")?)?,
            finish_assets(&mut self.assets, field("assets")?.as_ref())?,
            constant(rows, self.collection_id)?,
            Arc::new(self.datetime.finish()),
            Arc::new(self.start_datetime.finish()),
            Arc::new(self.end_datetime.finish()),
            Arc::new(self.platform.finish()),
            finish_list(&mut self.instruments, &field("instruments")?)?,
            Arc::new(self.cloud_cover.finish()),
            finish_list(&mut self.proj_transform, &field("proj:transform")?)?,
            finish_list(&mut self.proj_shape, &field("proj:shape")?)?,
            Arc::new(self.proj_epsg.finish()),
            Arc::new(self.sun_azimuth.finish()),
            self.bbox.finish()?,
            Arc::new(self.geometry.finish()),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

/// A dictionary column with one value in every row (`type`, `collection`).
fn constant(rows: usize, value: &str) -> Result<ArrayRef> {
    let keys = Int32Array::from(vec![0; rows]);
    let values: ArrayRef = Arc::new(StringArray::from(vec![value]));
    Ok(Arc::new(DictionaryArray::<Int32Type>::try_new(
        keys, values,
    )?))
}

fn append_strs<S: AsRef<str>>(list: &mut ListBuilder<StringBuilder>, values: Option<&[S]>) {
    match values {
        Some(values) => {
            for v in values {
                list.values().append_value(v.as_ref());
            }
            list.append(true);
        }
        None => list.append_null(),
    }
}

fn append_values<T: arrow_array::ArrowPrimitiveType>(
    list: &mut ListBuilder<arrow_array::builder::PrimitiveBuilder<T>>,
    values: Option<&[T::Native]>,
) {
    match values {
        Some(values) => {
            list.values().append_slice(values);
            list.append(true);
        }
        None => list.append_null(),
    }
}

/// Finishes a list builder with the exact list field of the schema.
fn finish_list<B: arrow_array::builder::ArrayBuilder>(
    list: &mut ListBuilder<B>,
    field: &FieldRef,
) -> Result<ArrayRef> {
    let array = list.finish();
    let DataType::List(item) = field.data_type() else {
        return Ok(Arc::new(array));
    };
    let (_, offsets, values, nulls) = array.into_parts();
    Ok(Arc::new(ListArray::try_new(
        item.clone(),
        offsets,
        values,
        nulls,
    )?))
}

fn struct_fields(field: &Field) -> Fields {
    match field.data_type() {
        DataType::Struct(fields) => fields.clone(),
        _ => Fields::empty(),
    }
}

fn list_item(field: &Field) -> Option<FieldRef> {
    match field.data_type() {
        DataType::List(item) => Some(item.clone()),
        _ => None,
    }
}

#[derive(Default)]
struct BboxColumns {
    xmin: Float64Builder,
    ymin: Float64Builder,
    xmax: Float64Builder,
    ymax: Float64Builder,
    valid: NullBufferBuilderDefault,
}

impl BboxColumns {
    fn append(&mut self, bbox: Option<[f64; 4]>) {
        let [a, b, c, d] = bbox.map_or([None; 4], |b| b.map(Some));
        self.xmin.append_option(a);
        self.ymin.append_option(b);
        self.xmax.append_option(c);
        self.ymax.append_option(d);
        self.valid.0.append(bbox.is_some());
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.xmin.finish()),
            Arc::new(self.ymin.finish()),
            Arc::new(self.xmax.finish()),
            Arc::new(self.ymax.finish()),
        ];
        Ok(Arc::new(StructArray::try_new(
            schema::bbox_fields(),
            columns,
            self.valid.0.finish(),
        )?))
    }
}

/// `NullBufferBuilder` with a `Default`.
struct NullBufferBuilderDefault(NullBufferBuilder);

impl Default for NullBufferBuilderDefault {
    fn default() -> Self {
        NullBufferBuilderDefault(NullBufferBuilder::new(1024))
    }
}

/// Offsets of a list column: lengths pushed row by row.
struct Offsets(OffsetBufferBuilder<i32>);

impl Default for Offsets {
    fn default() -> Self {
        Offsets(OffsetBufferBuilder::new(1024))
    }
}

impl Offsets {
    fn take(&mut self) -> arrow_buffer::OffsetBuffer<i32> {
        std::mem::take(self).0.finish()
    }
}

#[derive(Default)]
struct LinkColumns {
    offsets: Offsets,
    href: StringBuilder,
    rel: StringBuilder,
    media_type: StringBuilder,
}

impl LinkColumns {
    fn append(&mut self, links: &[HlsLink<'_>]) {
        for link in links {
            self.href.append_value(&link.href);
            self.rel.append_value(&link.rel);
            self.media_type.append_option(link.media_type.as_deref());
        }
        self.offsets.0.push_length(links.len());
    }

    fn finish(&mut self, field: &FieldRef) -> Result<ArrayRef> {
        let values = StructArray::try_new(
            schema::link_fields(),
            vec![
                Arc::new(self.href.finish()),
                Arc::new(self.rel.finish()),
                Arc::new(self.media_type.finish()),
            ],
            None,
        )?;
        let item = list_item(field).unwrap_or_else(|| {
            Arc::new(Field::new_list_field(
                DataType::Struct(schema::link_fields()),
                true,
            ))
        });
        Ok(Arc::new(ListArray::try_new(
            item,
            self.offsets.take(),
            Arc::new(values),
            None,
        )?))
    }
}

/// The columns of one asset key.
struct AssetColumns {
    valid: NullBufferBuilderDefault,
    href: StringBuilder,
    media_type: StringBuilder,
    roles: ListBuilder<StringBuilder>,
    bands: Option<BandColumns>,
}

impl AssetColumns {
    fn new(slot: &AssetSlot) -> Self {
        AssetColumns {
            valid: NullBufferBuilderDefault::default(),
            href: StringBuilder::new(),
            media_type: StringBuilder::new(),
            roles: ListBuilder::new(StringBuilder::new()),
            bands: slot
                .band
                .map(|band| BandColumns::new(schema::band_fields(band))),
        }
    }

    fn append(&mut self, asset: Option<&HlsAsset<'_>>) {
        self.valid.0.append(asset.is_some());
        self.href.append_option(asset.map(|a| a.href.as_ref()));
        self.media_type
            .append_option(asset.and_then(|a| a.media_type.as_deref()));
        append_strs(&mut self.roles, asset.and_then(|a| a.roles.as_deref()));
        if let Some(bands) = &mut self.bands {
            bands.append(asset.and_then(|a| a.bands.as_deref()));
        }
    }

    fn finish(&mut self, field: &Field) -> Result<ArrayRef> {
        let fields = struct_fields(field);
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.href.finish()),
            Arc::new(self.media_type.finish()),
            finish_list(&mut self.roles, &fields[2])?,
        ];
        if let Some(bands) = &mut self.bands {
            columns.push(bands.finish(&fields[3])?);
        }
        Ok(Arc::new(StructArray::try_new(
            fields,
            columns,
            self.valid.0.finish(),
        )?))
    }
}

fn finish_assets(assets: &mut [AssetColumns], field: &Field) -> Result<ArrayRef> {
    let fields = struct_fields(field);
    let columns = assets
        .iter_mut()
        .zip(fields.iter())
        .map(|(columns, field)| columns.finish(field))
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(StructArray::try_new(fields, columns, None)?))
}

/// The `eo:bands` list of one asset key; only the band fields its schema has.
struct BandColumns {
    fields: Fields,
    offsets: Offsets,
    valid: NullBufferBuilderDefault,
    name: StringBuilder,
    common_name: Option<StringBuilder>,
    center_wavelength: Option<Float64Builder>,
    full_width_half_max: Option<Float64Builder>,
}

impl BandColumns {
    fn new(fields: Fields) -> Self {
        let has = |name: &str| fields.find(name).is_some();
        BandColumns {
            common_name: has("common_name").then(StringBuilder::new),
            center_wavelength: has("center_wavelength").then(Float64Builder::new),
            full_width_half_max: has("full_width_half_max").then(Float64Builder::new),
            fields,
            offsets: Offsets::default(),
            valid: NullBufferBuilderDefault::default(),
            name: StringBuilder::new(),
        }
    }

    fn append(&mut self, bands: Option<&[HlsBand<'_>]>) {
        self.valid.0.append(bands.is_some());
        let bands = bands.unwrap_or_default();
        for band in bands {
            self.name.append_option(band.name.as_deref());
            if let Some(b) = &mut self.common_name {
                b.append_option(band.common_name.as_deref());
            }
            if let Some(b) = &mut self.center_wavelength {
                b.append_option(band.center_wavelength);
            }
            if let Some(b) = &mut self.full_width_half_max {
                b.append_option(band.full_width_half_max);
            }
        }
        self.offsets.0.push_length(bands.len());
    }

    fn finish(&mut self, field: &Field) -> Result<ArrayRef> {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(self.name.finish())];
        if let Some(b) = &mut self.common_name {
            columns.push(Arc::new(b.finish()));
        }
        if let Some(b) = &mut self.center_wavelength {
            columns.push(Arc::new(b.finish()));
        }
        if let Some(b) = &mut self.full_width_half_max {
            columns.push(Arc::new(b.finish()));
        }
        let values = StructArray::try_new(self.fields.clone(), columns, None)?;
        let item = list_item(field).unwrap_or_else(|| {
            Arc::new(Field::new_list_field(
                DataType::Struct(self.fields.clone()),
                true,
            ))
        });
        Ok(Arc::new(ListArray::try_new(
            item,
            self.offsets.take(),
            Arc::new(values),
            self.valid.0.finish(),
        )?))
    }
}
