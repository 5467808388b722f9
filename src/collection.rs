//! The two HLS v2.0 collections and everything that is fixed about them.

use std::fmt;
use std::str::FromStr;

/// One of the two HLS v2.0 collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    /// HLS Landsat 8/9 OLI surface reflectance (`HLSL30` v2.0).
    Hlsl30,
    /// HLS Sentinel-2 MSI surface reflectance (`HLSS30` v2.0).
    Hlss30,
}

impl Collection {
    /// Both collections, Landsat first.
    pub const ALL: [Collection; 2] = [Collection::Hlsl30, Collection::Hlss30];

    /// CMR short name: `HLSL30` / `HLSS30`.
    pub fn short_name(self) -> &'static str {
        match self {
            Collection::Hlsl30 => "HLSL30",
            Collection::Hlss30 => "HLSS30",
        }
    }

    /// The STAC collection id written into every cached item: `HLSL30_2.0` / `HLSS30_2.0`.
    pub fn stac_id(self) -> &'static str {
        match self {
            Collection::Hlsl30 => "HLSL30_2.0",
            Collection::Hlss30 => "HLSS30_2.0",
        }
    }

    /// CMR collection concept id (provider LPCLOUD).
    pub fn concept_id(self) -> &'static str {
        match self {
            Collection::Hlsl30 => "C2021957657-LPCLOUD",
            Collection::Hlss30 => "C2021957295-LPCLOUD",
        }
    }

    /// Product code inside granule ids: `L30` / `S30`.
    pub fn product(self) -> &'static str {
        match self {
            Collection::Hlsl30 => "L30",
            Collection::Hlss30 => "S30",
        }
    }

    /// LP DAAC bucket folder: `HLSL30.020` / `HLSS30.020`.
    pub fn bucket_folder(self) -> &'static str {
        match self {
            Collection::Hlsl30 => "HLSL30.020",
            Collection::Hlss30 => "HLSS30.020",
        }
    }

    /// CMR `dataset_id` (the collection's entry title).
    pub fn dataset_id(self) -> &'static str {
        match self {
            Collection::Hlsl30 => {
                "HLS Landsat Operational Land Imager Surface Reflectance and TOA Brightness Daily Global 30m v2.0"
            }
            Collection::Hlss30 => {
                "HLS Sentinel-2 Multi-spectral Instrument Surface Reflectance Daily Global 30m v2.0"
            }
        }
    }

    /// Product DOI (`sci:doi`).
    pub fn doi(self) -> &'static str {
        match self {
            Collection::Hlsl30 => "10.5067/HLS/HLSL30.002",
            Collection::Hlss30 => "10.5067/HLS/HLSS30.002",
        }
    }

    /// The first day of the collection's temporal extent.
    pub fn first_day(self) -> &'static str {
        match self {
            Collection::Hlsl30 => "2013-04-11T00:00:00Z",
            Collection::Hlss30 => "2015-11-28T00:00:00Z",
        }
    }

    /// The STAC Collection (1.0.0) of the cached items, as the `collections` map of the
    /// stac-geoparquet metadata holds it: id, title, description, license, extent (the
    /// globe, from the collection's first day, open-ended), providers and links.
    pub fn stac_collection(self) -> serde_json::Value {
        let (title, sensor) = match self {
            Collection::Hlsl30 => (
                "HLS Landsat Operational Land Imager Surface Reflectance and TOA Brightness Daily Global 30m v2.0",
                "the Operational Land Imager (OLI) of Landsat 8 and 9",
            ),
            Collection::Hlss30 => (
                "HLS Sentinel-2 Multi-spectral Instrument Surface Reflectance Daily Global 30m v2.0",
                "the Multi-Spectral Instrument (MSI) of Sentinel-2A, 2B and 2C",
            ),
        };
        let short = self.short_name().to_ascii_lowercase();
        serde_json::json!({
            "type": "Collection",
            "stac_version": "1.0.0",
            "id": self.stac_id(),
            "title": title,
            "description": format!(
                "Harmonized Landsat Sentinel-2 (HLS) v2.0 surface reflectance from {sensor}, \
                 on the Sentinel-2 MGRS tiling grid at 30 m, one item per granule as LP DAAC \
                 publishes it (CMR collection {}).",
                self.concept_id()
            ),
            "license": "proprietary",
            "extent": {
                "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
                "temporal": {"interval": [[self.first_day(), null]]},
            },
            "providers": [{
                "name": "LP DAAC",
                "roles": ["producer", "processor", "host"],
                "url": "https://lpdaac.usgs.gov",
            }],
            "links": [
                {"rel": "cite-as", "href": format!("https://doi.org/{}", self.doi())},
                {
                    "rel": "about",
                    "href": format!("https://lpdaac.usgs.gov/products/{short}v002/"),
                    "type": "text/html",
                },
                {
                    "rel": "license",
                    "href": "https://www.earthdata.nasa.gov/engage/open-data-services-software-policies/data-use-guidance",
                    "type": "text/html",
                },
            ],
        })
    }

    /// The collection a CMR collection concept id names, if it is one of ours.
    pub fn from_concept_id(concept_id: &str) -> Option<Collection> {
        Collection::ALL
            .into_iter()
            .find(|c| c.concept_id() == concept_id)
    }

    /// The collection a granule id (`HLS.S30.T…`) belongs to.
    pub fn from_granule_id(id: &str) -> Option<Collection> {
        match id.get(..8)? {
            "HLS.L30." => Some(Collection::Hlsl30),
            "HLS.S30." => Some(Collection::Hlss30),
            _ => None,
        }
    }

    /// Parses a comma-separated list (`HLSL30,HLSS30`), without duplicates, in the given order.
    pub fn parse_list(s: &str) -> Result<Vec<Collection>, UnknownCollection> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let c: Collection = part.parse()?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        if out.is_empty() {
            return Err(UnknownCollection(s.to_string()));
        }
        Ok(out)
    }
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

impl serde::Serialize for Collection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.short_name())
    }
}

/// A collection name that is neither HLSL30 nor HLSS30.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown collection {0:?}: expected HLSL30 or HLSS30 (HLSL30_2.0, HLSS30_2.0, L30 and S30 are accepted too)"
)]
pub struct UnknownCollection(pub String);

impl FromStr for Collection {
    type Err = UnknownCollection;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "HLSL30" | "HLSL30_2.0" | "HLSL30.V2.0" | "L30" => Ok(Collection::Hlsl30),
            "HLSS30" | "HLSS30_2.0" | "HLSS30.V2.0" | "S30" => Ok(Collection::Hlss30),
            _ => Err(UnknownCollection(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_lists() {
        assert_eq!("hlsl30".parse::<Collection>().unwrap(), Collection::Hlsl30);
        assert_eq!(
            "HLSS30_2.0".parse::<Collection>().unwrap(),
            Collection::Hlss30
        );
        assert_eq!(
            Collection::parse_list("HLSS30, HLSL30,HLSS30").unwrap(),
            vec![Collection::Hlss30, Collection::Hlsl30]
        );
        assert!(Collection::parse_list("HLSX30").is_err());
        assert!(Collection::parse_list(",").is_err());
    }

    #[test]
    fn stac_collections_are_valid_collections() {
        for c in Collection::ALL {
            let json = c.stac_collection();
            assert_eq!(json["id"], c.stac_id());
            let parsed: stac::Collection = serde_json::from_value(json).unwrap();
            assert_eq!(parsed.id, c.stac_id());
            assert_eq!(parsed.extent.spatial.bbox.len(), 1);
        }
    }

    #[test]
    fn identifies_granules_and_concepts() {
        assert_eq!(
            Collection::from_granule_id("HLS.L30.T15TWN.2025275T170439.v2.0"),
            Some(Collection::Hlsl30)
        );
        assert_eq!(Collection::from_granule_id("HLS.X30"), None);
        assert_eq!(
            Collection::from_concept_id("C2021957295-LPCLOUD"),
            Some(Collection::Hlss30)
        );
    }
}
