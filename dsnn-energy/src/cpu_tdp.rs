//! CPU model detection and the TDP table (CodeCarbon's `cpu_power.csv`).
//!
//! Matching follows CodeCarbon 3.3.2 (`TDP._get_matching_cpu`) step by step
//! so that both tools pick the same TDP for the same machine:
//!
//! 1. the raw model name equals a table name, ignoring case;
//! 2. the name is cleaned (`(R)` removed, cut before ` CPU @ `, ` CPU`
//!    removed, a trailing ` @ 2.40GHz` removed) and compared again;
//! 3. token-set match: both names are lower-cased, every character that is
//!    not a letter or digit becomes a space, and a table name matches when
//!    its word set contains, or is contained in, the model's word set (this
//!    is exactly when rapidfuzz's `token_set_ratio` scores 100). The match is
//!    accepted only if it is unique; with several candidates CodeCarbon
//!    (non-greedy) gives up, and so do we, unless `greedy` is set, which
//!    takes the first candidate in table order.
//!
//! The candidates of an ambiguous match are returned so that the caller can
//! say why no TDP was found. The fallbacks for an unknown model live in
//! the `estimator` module.

use crate::csv;
use std::sync::OnceLock;

const CPU_POWER_CSV: &str = include_str!("../data/cpu_power.csv");

/// One row of the TDP table.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuTdp {
    /// Model name as in the table.
    pub name: String,
    /// Thermal design power in W.
    pub tdp_w: f64,
}

/// How a model name was matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// Step 1: the raw name equals a table name (ignoring case).
    Exact,
    /// Step 2: the cleaned name equals a table name.
    Cleaned,
    /// Step 3: a unique word-set match.
    TokenSet,
    /// Step 3 with several candidates, first taken because `greedy` was set.
    Greedy,
}

/// The outcome of looking a model up.
#[derive(Debug, Clone, PartialEq)]
pub enum TdpLookup {
    /// A TDP was found.
    Found {
        /// The matching row.
        row: CpuTdp,
        /// Which step matched.
        kind: MatchKind,
    },
    /// Several rows matched equally well; none was chosen.
    Ambiguous {
        /// The matching table names (at most 10, in table order).
        candidates: Vec<String>,
    },
    /// No row matched.
    NotFound,
}

impl TdpLookup {
    /// The TDP, if one was found.
    pub fn tdp_w(&self) -> Option<f64> {
        match self {
            TdpLookup::Found { row, .. } => Some(row.tdp_w),
            _ => None,
        }
    }
}

/// The CPU TDP table.
#[derive(Debug, Clone)]
pub struct TdpTable {
    rows: Vec<CpuTdp>,
    tokens: Vec<Vec<String>>,
    skipped: usize,
}

impl TdpTable {
    /// The table compiled into the crate (parsed once, then shared).
    pub fn embedded() -> &'static TdpTable {
        static TABLE: OnceLock<TdpTable> = OnceLock::new();
        TABLE.get_or_init(|| TdpTable::parse(CPU_POWER_CSV))
    }

    /// Parses `Name,TDP` CSV text. Rows whose TDP is not a positive number
    /// (the table has four such as `27.29.5` and one 0 W entry) are skipped
    /// and counted.
    pub fn parse(text: &str) -> Self {
        let mut rows = Vec::new();
        let mut skipped = 0;
        for (i, rec) in csv::parse(text).into_iter().enumerate() {
            if i == 0 && rec.first().is_some_and(|h| h.eq_ignore_ascii_case("name")) {
                continue;
            }
            let tdp = rec.get(1).and_then(|t| t.trim().parse::<f64>().ok());
            match (rec.len(), tdp) {
                (2, Some(tdp_w))
                    if tdp_w.is_finite() && tdp_w > 0.0 && !rec[0].trim().is_empty() =>
                {
                    rows.push(CpuTdp {
                        name: rec[0].trim().to_string(),
                        tdp_w,
                    })
                }
                _ => {
                    log::debug!(
                        "cpu_power.csv record {}: malformed {:?}, skipped",
                        i + 1,
                        rec
                    );
                    skipped += 1;
                }
            }
        }
        let tokens = rows.iter().map(|r| tokenize(&r.name)).collect();
        TdpTable {
            rows,
            tokens,
            skipped,
        }
    }

    /// Number of usable rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no usable rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Number of malformed rows skipped while parsing.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Looks a model name up in CodeCarbon's manner (see the module docs).
    pub fn lookup(&self, model_raw: &str, greedy: bool) -> TdpLookup {
        let model_raw = model_raw.trim();
        if model_raw.is_empty() {
            return TdpLookup::NotFound;
        }
        if let Some(row) = self.exact(model_raw) {
            return TdpLookup::Found {
                row,
                kind: MatchKind::Exact,
            };
        }
        let cleaned = clean_model_name(model_raw);
        if let Some(row) = self.exact(&cleaned) {
            return TdpLookup::Found {
                row,
                kind: MatchKind::Cleaned,
            };
        }
        let want = tokenize(&cleaned);
        if want.is_empty() {
            return TdpLookup::NotFound;
        }
        let hits: Vec<usize> = (0..self.rows.len())
            .filter(|&i| token_set_full_match(&want, &self.tokens[i]))
            .collect();
        match hits.len() {
            0 => TdpLookup::NotFound,
            1 => TdpLookup::Found {
                row: self.rows[hits[0]].clone(),
                kind: MatchKind::TokenSet,
            },
            _ if greedy => TdpLookup::Found {
                row: self.rows[hits[0]].clone(),
                kind: MatchKind::Greedy,
            },
            _ => TdpLookup::Ambiguous {
                candidates: hits
                    .iter()
                    .take(10)
                    .map(|&i| self.rows[i].name.clone())
                    .collect(),
            },
        }
    }

    fn exact(&self, name: &str) -> Option<CpuTdp> {
        let lower = name.to_lowercase();
        self.rows
            .iter()
            .find(|r| r.name.to_lowercase() == lower)
            .cloned()
    }
}

/// CodeCarbon's clean-up of a raw model name (step 2).
pub fn clean_model_name(raw: &str) -> String {
    let mut s = raw.replace("(R)", "");
    if let Some(i) = s.find(" CPU @ ") {
        if i > 0 {
            s.truncate(i);
        }
    }
    s = s.replace(" CPU", "");
    strip_ghz_suffixes(&s)
}

/// Removes every ` @ <digits>.<digits>GHz` (with optional spaces after `@`).
fn strip_ghz_suffixes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(" @") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let trimmed = after.trim_start();
        let int_len = trimmed.bytes().take_while(u8::is_ascii_digit).count();
        let frac = &trimmed[int_len..];
        let frac_len = frac
            .strip_prefix('.')
            .map(|f| f.bytes().take_while(u8::is_ascii_digit).count())
            .unwrap_or(0);
        let tail = frac.get(1 + frac_len..).unwrap_or("");
        if int_len > 0 && frac_len > 0 && tail.starts_with("GHz") {
            rest = &tail[3..];
        } else {
            out.push_str(" @");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Lower-cased words of a name, every non-alphanumeric character a separator
/// (rapidfuzz's `default_process` followed by a whitespace split), deduplicated.
fn tokenize(name: &str) -> Vec<String> {
    let mut words: Vec<String> = name
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    words.sort();
    words.dedup();
    words
}

/// Whether `token_set_ratio(a, b) == 100`: the word sets share a word and one
/// contains the other.
fn token_set_full_match(a: &[String], b: &[String]) -> bool {
    let common = a.iter().filter(|w| b.binary_search(w).is_ok()).count();
    common > 0 && (common == a.len() || common == b.len())
}

/// The CPU as `/proc/cpuinfo` describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuInfo {
    /// The first `model name` (x86) or `Model`/`Hardware` (ARM) value.
    pub model: Option<String>,
    /// Logical CPUs (`processor` entries).
    pub logical_cpus: usize,
    /// Distinct `physical id` values (sockets); 1 when the field is absent.
    pub sockets: usize,
}

impl CpuInfo {
    /// Parses the text of `/proc/cpuinfo`.
    pub fn parse(text: &str) -> Self {
        let mut model = None;
        let mut fallback_model = None;
        let mut logical = 0;
        let mut sockets: Vec<&str> = Vec::new();
        for line in text.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            match k {
                "processor" => logical += 1,
                "model name" if model.is_none() && !v.is_empty() => model = Some(v.to_string()),
                "Model" | "Hardware" if fallback_model.is_none() && !v.is_empty() => {
                    fallback_model = Some(v.to_string())
                }
                "physical id" if !sockets.contains(&v) => sockets.push(v),
                _ => {}
            }
        }
        CpuInfo {
            model: model.or(fallback_model),
            logical_cpus: logical,
            sockets: sockets.len().max(1),
        }
    }

    /// Reads `/proc/cpuinfo`; an unreadable file gives an empty description.
    pub fn detect() -> Self {
        match std::fs::read_to_string("/proc/cpuinfo") {
            Ok(t) => {
                let mut info = CpuInfo::parse(&t);
                if info.logical_cpus == 0 {
                    info.logical_cpus = available_cpus();
                }
                info
            }
            Err(e) => {
                log::warn!("cannot read /proc/cpuinfo: {e}");
                CpuInfo {
                    model: None,
                    logical_cpus: available_cpus(),
                    sockets: 1,
                }
            }
        }
    }
}

fn available_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> &'static TdpTable {
        TdpTable::embedded()
    }

    #[test]
    fn embedded_table_skips_only_the_malformed_rows() {
        let t = table();
        // 4,918 data rows: four with a TDP such as `27.29.5`, one of 0 W.
        assert_eq!(t.len() + t.skipped(), 4918);
        assert_eq!(t.skipped(), 5);
        // Quoted names with commas survive.
        assert_eq!(
            t.lookup("Intel EP80579 Integrated, 1066 MHz", false)
                .tdp_w(),
            Some(18.0)
        );
    }

    #[test]
    fn exact_and_case_insensitive() {
        let r = table().lookup("amd epyc 7443", false);
        assert_eq!(
            r,
            TdpLookup::Found {
                row: CpuTdp {
                    name: "AMD EPYC 7443".into(),
                    tdp_w: 200.0
                },
                kind: MatchKind::Exact
            }
        );
    }

    #[test]
    fn intel_brand_string_is_cleaned() {
        assert_eq!(
            clean_model_name("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz"),
            "Intel Xeon Gold 6148"
        );
        assert_eq!(
            clean_model_name("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz"),
            "Intel Core(TM) i7-8700"
        );
        assert_eq!(clean_model_name("Foo @ 3.5GHz bar"), "Foo bar");
        assert_eq!(clean_model_name("Foo @ fast"), "Foo @ fast");
        match table().lookup("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", false) {
            TdpLookup::Found { row, kind } => {
                assert_eq!(row.name, "Intel Core i7-8700");
                assert_eq!(row.tdp_w, 65.0);
                assert_eq!(kind, MatchKind::TokenSet);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn amd_core_count_suffix_matches_by_words() {
        match table().lookup("AMD EPYC 7643 48-Core Processor", false) {
            TdpLookup::Found { row, kind } => {
                assert_eq!(row.name, "AMD EPYC 7643");
                assert_eq!(kind, MatchKind::TokenSet);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bare_family_name_is_ambiguous_unless_greedy() {
        // This machine's /proc/cpuinfo says only "AMD EPYC".
        match table().lookup("AMD EPYC", false) {
            TdpLookup::Ambiguous { candidates } => {
                assert_eq!(candidates.len(), 10);
                assert!(candidates.iter().all(|c| c.starts_with("AMD EPYC")));
            }
            other => panic!("{other:?}"),
        }
        match table().lookup("AMD EPYC", true) {
            TdpLookup::Found { row, kind } => {
                assert_eq!(kind, MatchKind::Greedy);
                assert_eq!(row.name, "AMD EPYC 4124P");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_model_is_not_found() {
        assert_eq!(
            table().lookup("Quantum Widget 9000", false),
            TdpLookup::NotFound
        );
        assert_eq!(table().lookup("   ", false), TdpLookup::NotFound);
    }

    #[test]
    fn parse_counts_malformed_rows() {
        let t = TdpTable::parse("Name,TDP\nA 1,10\nB 2,27.29.5\n\"C, 3\",5.5\nD,\nE,-3\n");
        assert_eq!(t.len(), 2);
        assert_eq!(t.skipped(), 3);
        assert_eq!(t.lookup("c, 3", false).tdp_w(), Some(5.5));
    }

    #[test]
    fn cpuinfo_parsing() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n\
                    physical id\t: 0\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\nphysical id\t: 0\n\n\
                    processor\t: 2\nmodel name\t: AMD EPYC\nphysical id\t: 1\n";
        let info = CpuInfo::parse(text);
        assert_eq!(info.model.as_deref(), Some("AMD EPYC"));
        assert_eq!(info.logical_cpus, 3);
        assert_eq!(info.sockets, 2);
        let arm = CpuInfo::parse("processor : 0\nprocessor : 1\nHardware : BCM2835\n");
        assert_eq!(arm.model.as_deref(), Some("BCM2835"));
        assert_eq!(arm.sockets, 1);
        let here = CpuInfo::detect();
        assert!(here.logical_cpus >= 1);
    }
}
