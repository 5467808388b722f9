//! From a granule's ECHO10 values ([`GranuleMeta`]) straight to an [`HlsItem`]: the item
//! [`to_stac_item`](crate::source::hls::to_stac_item) builds, without building it as JSON
//! and parsing it again (bulk mode's rows).

use super::item::{HlsAsset, HlsBand, HlsItem, HlsLink, micros};
use super::schema::AssetSlot;
use crate::source::hls::{
    COG_MEDIA_TYPE, GranuleMeta, STAC_EXTENSIONS, epsg_of_tile, instrument_name,
};
use std::borrow::Cow;

/// The item of `meta` in the fixed shape, field for field what parsing
/// `to_stac_item(meta)` gives. `slots` are the asset slots of `meta`'s collection.
pub(crate) fn from_meta<'a>(meta: &'a GranuleMeta, slots: &[AssetSlot]) -> HlsItem<'a> {
    let id = meta.granule_ur.as_str();
    let begin = micros(&meta.begin);
    let mut links = vec![HlsLink {
        href: Cow::Owned(meta.stac_json_href()),
        rel: Cow::Borrowed("self"),
        media_type: Some(Cow::Borrowed("application/json")),
    }];
    if let Some(href) = meta.doi_href() {
        links.push(HlsLink {
            href: Cow::Owned(href),
            rel: Cow::Borrowed("cite-as"),
            media_type: None,
        });
    }
    let assets = slots
        .iter()
        .map(|slot| {
            Some(match slot.band {
                Some(band) => HlsAsset {
                    href: Cow::Owned(meta.band_href(band.name)),
                    media_type: Some(Cow::Borrowed(COG_MEDIA_TYPE)),
                    roles: Some(vec![Cow::Borrowed("data")]),
                    bands: Some(vec![HlsBand {
                        name: Some(Cow::Borrowed(band.name)),
                        common_name: band.common_name.map(Cow::Borrowed),
                        center_wavelength: band.center_wavelength,
                        full_width_half_max: band.full_width_half_max,
                    }]),
                },
                None => HlsAsset {
                    href: Cow::Owned(meta.thumbnail_href()),
                    media_type: Some(Cow::Borrowed("image/jpeg")),
                    roles: Some(vec![Cow::Borrowed("thumbnail")]),
                    bands: None,
                },
            })
        })
        .collect();
    HlsItem {
        id: Cow::Borrowed(id),
        stac_version: "1.0.0",
        stac_extensions: Some(STAC_EXTENSIONS.iter().map(|s| Cow::Borrowed(*s)).collect()),
        bbox: meta.published_bbox(),
        geometry: meta.closed_rings().into_iter().map(|r| vec![r]).collect(),
        links,
        assets,
        datetime: Some(begin),
        start_datetime: Some(begin),
        end_datetime: Some(micros(&meta.end)),
        platform: Some(Cow::Owned(meta.platform.to_ascii_lowercase())),
        instruments: Some(vec![Cow::Owned(instrument_name(&meta.instrument))]),
        cloud_cover: meta.cloud_cover,
        proj_transform: meta.proj_transform().map(Vec::from),
        proj_shape: meta.proj_shape().map(|s| s.map(i64::from).to_vec()),
        proj_epsg: meta.mgrs_tile.as_deref().and_then(epsg_of_tile),
        sun_azimuth: meta.sun_azimuth,
        view_azimuth: meta.view_azimuth,
        sci_doi: meta.doi.as_deref().map(Cow::Borrowed),
    }
}
