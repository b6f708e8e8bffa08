//! Carbon intensity of electricity and the emissions of a region of work.
//!
//! Emissions (gCO2e) = energy (kWh) x PUE x carbon intensity (gCO2e/kWh).
//! The intensity comes from CodeCarbon's tables, embedded in the crate:
//! by ISO-3166 alpha-3 country code (`global_energy_mix.json`), by cloud
//! provider and region (`impact.csv`), or the world average of 475
//! gCO2e/kWh (`carbon_intensity_per_source.json`).

use crate::csv;
use crate::error::{EnergyError, Result};
use crate::units::Energy;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The world-average grid intensity CodeCarbon falls back to, in gCO2e/kWh
/// (IEA Global Energy & CO2 Status Report 2019).
pub const WORLD_AVERAGE_G_PER_KWH: f64 = 475.0;

const ENERGY_MIX_JSON: &str = include_str!("../data/global_energy_mix.json");
const IMPACT_CSV: &str = include_str!("../data/impact.csv");
const PER_SOURCE_JSON: &str = include_str!("../data/carbon_intensity_per_source.json");

/// Where the electricity comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum GridLocation {
    /// The world average (475 gCO2e/kWh).
    World,
    /// A country by ISO-3166 alpha-3 code, e.g. `DEU`.
    Country {
        /// The code, any case.
        iso3: String,
    },
    /// A cloud provider and region, e.g. `gcp` / `europe-west1`.
    Cloud {
        /// Provider as in CodeCarbon's table (`gcp`, `aws`, `azure`).
        provider: String,
        /// Region name as the provider spells it.
        region: String,
    },
    /// A fixed intensity the user knows (for example from a utility bill).
    Fixed {
        /// gCO2e per kWh.
        g_per_kwh: f64,
    },
}

/// A resolved grid intensity and where the figure came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarbonIntensity {
    /// gCO2e emitted per kWh drawn from the grid.
    pub g_per_kwh: f64,
    /// Country name, where known (for the emissions log).
    pub country_name: String,
    /// ISO-3 code, where known.
    pub country_iso_code: String,
    /// Cloud provider, where given.
    pub cloud_provider: String,
    /// Cloud region, where given.
    pub cloud_region: String,
    /// Which table and key produced the figure, in words.
    pub source: String,
}

impl CarbonIntensity {
    /// The world average.
    pub fn world() -> Self {
        CarbonIntensity {
            g_per_kwh: WORLD_AVERAGE_G_PER_KWH,
            country_name: String::new(),
            country_iso_code: String::new(),
            cloud_provider: String::new(),
            cloud_region: String::new(),
            source: "world average (CodeCarbon carbon_intensity_per_source.json)".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Country {
    name: String,
    g_per_kwh: f64,
}

#[derive(Debug, Clone)]
struct CloudRegion {
    provider: String,
    region: String,
    country_name: String,
    country_iso: String,
    g_per_kwh: f64,
}

/// CodeCarbon's carbon-intensity tables, parsed.
#[derive(Debug, Clone)]
pub struct CarbonTables {
    countries: HashMap<String, Country>,
    cloud: Vec<CloudRegion>,
    world_g_per_kwh: f64,
}

impl CarbonTables {
    /// The tables compiled into the crate (parsed once, then shared).
    pub fn embedded() -> Result<&'static CarbonTables> {
        static TABLES: OnceLock<std::result::Result<CarbonTables, String>> = OnceLock::new();
        TABLES
            .get_or_init(|| {
                CarbonTables::parse(ENERGY_MIX_JSON, IMPACT_CSV, PER_SOURCE_JSON)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| EnergyError::Parse {
                what: "embedded carbon tables".into(),
                detail: e.clone(),
            })
    }

    /// Parses the three tables from text (same formats as CodeCarbon's files).
    pub fn parse(energy_mix_json: &str, impact_csv: &str, per_source_json: &str) -> Result<Self> {
        let perr = |what: &str, detail: String| EnergyError::Parse {
            what: what.into(),
            detail,
        };
        let mix: HashMap<String, serde_json::Value> = serde_json::from_str(energy_mix_json)
            .map_err(|e| perr("global_energy_mix.json", e.to_string()))?;
        let mut countries = HashMap::with_capacity(mix.len());
        for (iso, entry) in mix {
            let Some(g) = entry.get("carbon_intensity").and_then(|v| v.as_f64()) else {
                log::debug!("global_energy_mix.json: {iso} has no carbon_intensity, skipped");
                continue;
            };
            let name = entry
                .get("country_name")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            countries.insert(iso.to_ascii_uppercase(), Country { name, g_per_kwh: g });
        }

        let rows = csv::parse(impact_csv);
        let header = rows
            .first()
            .ok_or_else(|| perr("impact.csv", "empty".into()))?;
        let col = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| perr("impact.csv", format!("no `{name}` column")))
        };
        let (ip, ir, icn, iiso, iimp) = (
            col("provider")?,
            col("region")?,
            col("country_name")?,
            col("countryIsoCode")?,
            col("impact")?,
        );
        let mut cloud = Vec::new();
        for (line, row) in rows.iter().enumerate().skip(1) {
            let get = |i: usize| row.get(i).map(|s| s.trim()).unwrap_or_default();
            match get(iimp).parse::<f64>() {
                Ok(g) => cloud.push(CloudRegion {
                    provider: get(ip).to_ascii_lowercase(),
                    region: get(ir).to_ascii_lowercase(),
                    country_name: get(icn).to_string(),
                    country_iso: get(iiso).to_string(),
                    g_per_kwh: g,
                }),
                Err(_) => log::debug!("impact.csv line {}: bad impact, skipped", line + 1),
            }
        }

        let per_source: serde_json::Value = serde_json::from_str(per_source_json)
            .map_err(|e| perr("carbon_intensity_per_source.json", e.to_string()))?;
        let world_g_per_kwh = per_source
            .get("world_average")
            .and_then(|v| v.as_f64())
            .unwrap_or(WORLD_AVERAGE_G_PER_KWH);
        Ok(CarbonTables {
            countries,
            cloud,
            world_g_per_kwh,
        })
    }

    /// Number of countries with an intensity.
    pub fn country_count(&self) -> usize {
        self.countries.len()
    }

    /// Number of cloud regions with an intensity.
    pub fn cloud_region_count(&self) -> usize {
        self.cloud.len()
    }

    /// The intensity at `location`, or an error naming the unknown key.
    pub fn intensity(&self, location: &GridLocation) -> Result<CarbonIntensity> {
        match location {
            GridLocation::World => Ok(CarbonIntensity {
                g_per_kwh: self.world_g_per_kwh,
                ..CarbonIntensity::world()
            }),
            GridLocation::Fixed { g_per_kwh } => {
                if !g_per_kwh.is_finite() || *g_per_kwh < 0.0 {
                    return Err(EnergyError::invalid(
                        "carbon intensity",
                        format!("{g_per_kwh} gCO2e/kWh is not a non-negative number"),
                    ));
                }
                Ok(CarbonIntensity {
                    g_per_kwh: *g_per_kwh,
                    source: "fixed by the user".into(),
                    ..CarbonIntensity::world()
                })
            }
            GridLocation::Country { iso3 } => {
                let key = iso3.trim().to_ascii_uppercase();
                let c = self
                    .countries
                    .get(&key)
                    .ok_or_else(|| EnergyError::UnknownCountry(iso3.clone()))?;
                Ok(CarbonIntensity {
                    g_per_kwh: c.g_per_kwh,
                    country_name: c.name.clone(),
                    country_iso_code: key.clone(),
                    cloud_provider: String::new(),
                    cloud_region: String::new(),
                    source: format!("global_energy_mix.json[{key}]"),
                })
            }
            GridLocation::Cloud { provider, region } => {
                let (p, r) = (
                    provider.trim().to_ascii_lowercase(),
                    region.trim().to_ascii_lowercase(),
                );
                let c = self
                    .cloud
                    .iter()
                    .find(|c| c.provider == p && c.region == r)
                    .ok_or_else(|| EnergyError::UnknownCloudRegion {
                        provider: provider.clone(),
                        region: region.clone(),
                    })?;
                Ok(CarbonIntensity {
                    g_per_kwh: c.g_per_kwh,
                    country_name: c.country_name.clone(),
                    country_iso_code: c.country_iso.clone(),
                    cloud_provider: c.provider.clone(),
                    cloud_region: c.region.clone(),
                    source: format!("impact.csv[{p}/{r}]"),
                })
            }
        }
    }

    /// Like [`CarbonTables::intensity`], but an unknown country or region
    /// falls back to the world average with a warning, as CodeCarbon does.
    pub fn intensity_or_world(&self, location: &GridLocation) -> CarbonIntensity {
        match self.intensity(location) {
            Ok(i) => i,
            Err(e) => {
                log::warn!(
                    "{e}; using the world average of {} gCO2e/kWh",
                    self.world_g_per_kwh
                );
                CarbonIntensity {
                    g_per_kwh: self.world_g_per_kwh,
                    source: format!("world average (fallback: {e})"),
                    ..CarbonIntensity::world()
                }
            }
        }
    }
}

/// How energy turns into emissions at one site: grid intensity and the
/// data centre's power usage effectiveness (PUE >= 1; 1.0 for a desktop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarbonAccount {
    /// Grid intensity.
    pub intensity: CarbonIntensity,
    /// Facility energy / IT energy.
    pub pue: f64,
}

impl CarbonAccount {
    /// An account; PUE must be finite and at least 1.
    pub fn new(intensity: CarbonIntensity, pue: f64) -> Result<Self> {
        if !pue.is_finite() || pue < 1.0 {
            return Err(EnergyError::invalid(
                "PUE",
                format!("{pue} (must be a number >= 1)"),
            ));
        }
        Ok(CarbonAccount { intensity, pue })
    }

    /// World average, PUE 1 (CodeCarbon's defaults).
    pub fn world_default() -> Self {
        CarbonAccount {
            intensity: CarbonIntensity::world(),
            pue: 1.0,
        }
    }

    /// Energy drawn by the facility for `it_energy` used by the machine.
    pub fn facility_energy(&self, it_energy: Energy) -> Energy {
        it_energy.scaled(self.pue)
    }

    /// Emissions in grams CO2e: kWh x PUE x gCO2e/kWh.
    pub fn emissions_g(&self, it_energy: Energy) -> f64 {
        it_energy.kwh() * self.pue * self.intensity.g_per_kwh
    }

    /// Energy and emissions of one region of work.
    pub fn footprint(&self, it_energy: Energy) -> Footprint {
        Footprint {
            it_energy,
            facility_energy: self.facility_energy(it_energy),
            emissions_g: self.emissions_g(it_energy),
            g_per_kwh: self.intensity.g_per_kwh,
            pue: self.pue,
        }
    }
}

/// Energy and emissions of a region of work.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    /// Energy the machine used (what the meters report).
    pub it_energy: Energy,
    /// Energy the facility drew (IT energy x PUE); CodeCarbon's `energy_consumed`.
    pub facility_energy: Energy,
    /// Emissions in grams CO2e.
    pub emissions_g: f64,
    /// The intensity used, gCO2e/kWh.
    pub g_per_kwh: f64,
    /// The PUE used.
    pub pue: f64,
}

/// Everything worth keeping about one metered region, flat and
/// serialisable, for a trial log: energy (IT and facility), emissions, time,
/// and where the figures came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyRecord {
    /// Energy the machine used, J.
    pub joules: f64,
    /// Energy the facility drew (x PUE), kWh: CodeCarbon's `energy_consumed`,
    /// the paper's energy objective.
    pub kwh: f64,
    /// Emissions, gCO2e.
    pub emissions_g: f64,
    /// Wall time, s.
    pub wall_s: f64,
    /// Process CPU time, s.
    pub cpu_s: f64,
    /// The meter(s).
    pub source: String,
    /// Measured or estimated.
    pub provenance: crate::meter::Provenance,
    /// Grid intensity used, gCO2e/kWh.
    pub g_per_kwh: f64,
    /// Where the intensity came from.
    pub intensity_source: String,
    /// PUE used.
    pub pue: f64,
}

impl EnergyRecord {
    /// The record of `reading` under `account`.
    pub fn new(reading: &crate::meter::EnergyReading, account: &CarbonAccount) -> Self {
        let f = account.footprint(reading.energy);
        EnergyRecord {
            joules: reading.joules(),
            kwh: f.facility_energy.kwh(),
            emissions_g: f.emissions_g,
            wall_s: reading.wall.as_secs_f64(),
            cpu_s: reading.cpu_time.as_secs_f64(),
            source: reading.source.clone(),
            provenance: reading.provenance,
            g_per_kwh: f.g_per_kwh,
            intensity_source: account.intensity.source.clone(),
            pue: f.pue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> &'static CarbonTables {
        CarbonTables::embedded().unwrap()
    }

    #[test]
    fn embedded_tables_parse_completely() {
        let t = tables();
        assert_eq!(t.country_count(), 213);
        assert_eq!(t.cloud_region_count(), 40);
        assert_eq!(t.world_g_per_kwh, 475.0);
    }

    #[test]
    fn country_lookup_is_case_insensitive_and_exact() {
        let t = tables();
        let fra = t
            .intensity(&GridLocation::Country { iso3: "fra".into() })
            .unwrap();
        assert_eq!(fra.g_per_kwh, 56.039);
        assert_eq!(fra.country_name, "France");
        assert_eq!(fra.country_iso_code, "FRA");
        let deu = t
            .intensity(&GridLocation::Country { iso3: "DEU".into() })
            .unwrap();
        assert_eq!(deu.g_per_kwh, 380.95);
    }

    #[test]
    fn unknown_country_is_an_error_or_the_world_average() {
        let t = tables();
        let loc = GridLocation::Country { iso3: "XYZ".into() };
        assert!(matches!(t.intensity(&loc), Err(EnergyError::UnknownCountry(c)) if c == "XYZ"));
        let w = t.intensity_or_world(&loc);
        assert_eq!(w.g_per_kwh, 475.0);
        assert!(w.source.contains("XYZ"), "{}", w.source);
    }

    #[test]
    fn cloud_region_lookup() {
        let t = tables();
        let r = t
            .intensity(&GridLocation::Cloud {
                provider: "GCP".into(),
                region: "asia-east1".into(),
            })
            .unwrap();
        assert_eq!(r.g_per_kwh, 451.0);
        assert_eq!(r.country_iso_code, "TWN");
        assert!(matches!(
            t.intensity(&GridLocation::Cloud {
                provider: "gcp".into(),
                region: "mars-north1".into()
            }),
            Err(EnergyError::UnknownCloudRegion { .. })
        ));
    }

    #[test]
    fn world_and_fixed() {
        let t = tables();
        assert_eq!(t.intensity(&GridLocation::World).unwrap().g_per_kwh, 475.0);
        assert_eq!(
            t.intensity(&GridLocation::Fixed { g_per_kwh: 12.5 })
                .unwrap()
                .g_per_kwh,
            12.5
        );
        assert!(t
            .intensity(&GridLocation::Fixed { g_per_kwh: -1.0 })
            .is_err());
    }

    #[test]
    fn record_flattens_a_reading() {
        use crate::meter::{Component, ComponentEnergy, EnergyReading, Provenance, RegionSpan};
        use std::time::{Duration, SystemTime};
        let reading = EnergyReading::from_components(
            "rapl",
            RegionSpan {
                started_at: SystemTime::UNIX_EPOCH,
                wall: Duration::from_secs(3),
                cpu_time: Duration::from_secs(2),
            },
            vec![ComponentEnergy {
                component: Component::Cpu,
                energy: Energy::from_kwh(0.5),
                source: "rapl:package-0".into(),
                provenance: Provenance::Measured,
            }],
        );
        let acc = CarbonAccount::new(
            tables()
                .intensity(&GridLocation::Country { iso3: "FRA".into() })
                .unwrap(),
            1.2,
        )
        .unwrap();
        let r = EnergyRecord::new(&reading, &acc);
        assert_eq!(r.joules, 1.8e6);
        assert!((r.kwh - 0.6).abs() < 1e-12);
        assert!((r.emissions_g - 0.6 * 56.039).abs() < 1e-9);
        assert_eq!((r.wall_s, r.cpu_s), (3.0, 2.0));
        assert_eq!(r.provenance, Provenance::Measured);
        assert_eq!(r.intensity_source, "global_energy_mix.json[FRA]");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<EnergyRecord>(&json).unwrap(), r);
    }

    #[test]
    fn emissions_are_kwh_times_pue_times_intensity() {
        let intensity = CarbonIntensity {
            g_per_kwh: 400.0,
            ..CarbonIntensity::world()
        };
        let acc = CarbonAccount::new(intensity, 1.5).unwrap();
        // 2 kWh x 1.5 x 400 g/kWh = 1200 g.
        let f = acc.footprint(Energy::from_kwh(2.0));
        assert!((f.emissions_g - 1200.0).abs() < 1e-9);
        assert!((f.facility_energy.kwh() - 3.0).abs() < 1e-12);
        assert_eq!(f.it_energy.kwh(), 2.0);
        assert!(CarbonAccount::new(CarbonIntensity::world(), 0.9).is_err());
        assert!(CarbonAccount::new(CarbonIntensity::world(), f64::NAN).is_err());
        let w = CarbonAccount::world_default();
        assert!((w.emissions_g(Energy::from_kwh(1.0)) - 475.0).abs() < 1e-9);
    }
}
