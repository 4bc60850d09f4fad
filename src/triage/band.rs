//! Worklist bands: the configured names (`[triage] bands`, most urgent
//! first) as a [`Bands`] table, and a [`Band`] as a position in it, so a
//! study's place is compared by urgency and written by name, never matched
//! back from its text.

use serde::{Deserialize, Serialize};

/// Most bands a config may list (a [`Band`] is one byte).
pub const MAX_BANDS: usize = u8::MAX as usize;

/// One band, by its position in the configured table: 0 is the most urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Band(u8);

impl Band {
    /// Position in the table, 0 the most urgent.
    pub fn position(self) -> usize {
        usize::from(self.0)
    }
}

/// The configured bands, most urgent first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bands(Vec<String>);

impl Bands {
    /// The table of `names` (config validation keeps it to [`MAX_BANDS`];
    /// any beyond are dropped).
    pub fn new(mut names: Vec<String>) -> Self {
        names.truncate(MAX_BANDS);
        Self(names)
    }

    /// The band called `name`.
    pub fn find(&self, name: &str) -> Option<Band> {
        self.0.iter().position(|b| b == name).and_then(|i| u8::try_from(i).ok()).map(Band)
    }

    /// The band called `name`, else the least urgent: names are validated
    /// at config load, so the fallback only keeps an unvalidated config
    /// from failing.
    pub fn position_or_last(&self, name: &str) -> Band {
        self.find(name).unwrap_or_else(|| self.last())
    }

    /// The least urgent band (position 0 when the table is empty).
    pub fn last(&self) -> Band {
        Band(u8::try_from(self.0.len().saturating_sub(1)).unwrap_or(u8::MAX))
    }

    /// The band's name, if the table has it.
    pub fn get(&self, band: Band) -> Option<&str> {
        self.0.get(band.position()).map(String::as_str)
    }

    /// The band's name; empty for a band this table does not have.
    pub fn name(&self, band: Band) -> &str {
        self.get(band).unwrap_or("")
    }

    /// Every band with its name, most urgent first.
    pub fn iter(&self) -> impl Iterator<Item = (Band, &str)> {
        self.0.iter().enumerate().filter_map(|(i, name)| Some((Band(u8::try_from(i).ok()?), name.as_str())))
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// The page's colour class for a band: the DESP bands have theirs
    /// (defined with them in [`super::desp`]); any other band is a
    /// neutral grey, still labelled.
    pub fn colour_class(&self, band: Band) -> &'static str {
        super::desp::colour_class(self.name(band)).unwrap_or("band-other")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_are_found_by_name_ordered_by_urgency_and_named_back() {
        let bands = Bands::new(["URGENT", "ROUTINE", "NO_FINDING"].map(String::from).to_vec());
        let urgent = bands.find("URGENT").expect("urgent");
        let quiet = bands.find("NO_FINDING").expect("quiet");
        assert!(urgent < quiet);
        assert_eq!((bands.name(urgent), quiet.position()), ("URGENT", 2));
        assert_eq!(bands.find("LATER"), None);
        assert_eq!(bands.position_or_last("LATER"), quiet);
        assert_eq!(bands.iter().map(|(_, n)| n).collect::<Vec<_>>(), ["URGENT", "ROUTINE", "NO_FINDING"]);
        assert_eq!(Bands::default().name(Band(3)), "");
        assert_eq!(bands.colour_class(urgent), "band-urgent");
        assert_eq!(bands.colour_class(quiet), "band-other");
    }

    #[test]
    fn a_band_serialises_as_its_position_and_the_table_as_its_names() {
        let bands = Bands::new(vec!["A".into(), "B".into()]);
        assert_eq!(serde_json::to_string(&bands.find("B")).expect("json"), "1");
        assert_eq!(serde_json::to_string(&bands).expect("json"), r#"["A","B"]"#);
    }
}
