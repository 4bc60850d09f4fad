//! Planning a DICOMweb input with QIDO-RS: studies by date window (a window
//! that comes back full is split and asked again, never paged with
//! `offset`: Orthanc 1.10 loses studies that way), then each study's
//! instances ([`super::instances`]), kept by their series' modality.

use chrono::{Duration as Days, NaiveDate};

use super::client::{Client, HttpError};
use super::config::{DicomWebConfig, RemoteInput};
use super::manifest::Manifest;
use crate::message::StudyUid;
use crate::run::shard::Shard;

/// Why an input could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{input}: {error}")]
    Http { input: String, error: HttpError },
    #[error("{input}: {problem}")]
    Query { input: String, problem: String },
}

/// A study date window (inclusive), and a time window within one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    from: NaiveDate,
    to: NaiveDate,
    /// Minutes since midnight, inclusive, when the window is part of one day.
    minutes: Option<(u32, u32)>,
}

impl Window {
    fn study_date(&self) -> String {
        let (a, b) = (self.from.format("%Y%m%d"), self.to.format("%Y%m%d"));
        if self.from == self.to {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    }

    fn study_time(&self) -> Option<String> {
        let hhmm = |m: u32| format!("{:02}{:02}", m / 60, m % 60);
        self.minutes.map(|(a, b)| format!("{}-{}59", hhmm(a), hhmm(b)))
    }

    /// Two halves, or `None` when the window is one minute.
    fn split(&self) -> Option<(Window, Window)> {
        if self.from < self.to {
            let days = (self.to - self.from).num_days();
            let mid = self.from + Days::days(days / 2);
            return Some((Window { to: mid, ..*self }, Window { from: mid + Days::days(1), ..*self }));
        }
        let (a, b) = self.minutes.unwrap_or((0, 24 * 60 - 1));
        if a >= b {
            return None;
        }
        let mid = a + (b - a) / 2;
        Some((Window { minutes: Some((a, mid)), ..*self }, Window { minutes: Some((mid + 1, b)), ..*self }))
    }
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y%m%d").ok()
}

/// Resolves `today`, `yesterday` and `last-night` against `today`; parses
/// `YYYYMMDD` and `YYYYMMDD-YYYYMMDD`.
fn window_of(value: &str, today: NaiveDate) -> Option<Window> {
    let day = |d: NaiveDate| Window { from: d, to: d, minutes: None };
    match value {
        "today" => Some(day(today)),
        "yesterday" => Some(day(today - Days::days(1))),
        "last-night" => Some(Window { from: today - Days::days(1), to: today, minutes: None }),
        _ => match value.split_once('-') {
            Some((a, b)) => {
                let (from, to) = (parse_date(a)?, parse_date(b)?);
                (from <= to).then_some(Window { from, to, minutes: None })
            }
            None => parse_date(value).map(day),
        },
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub(super) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query_string(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// The first string value of a DICOM JSON attribute (`"0020000D"`).
pub(super) fn text(row: &serde_json::Value, tag: &str) -> Option<String> {
    let value = row.get(tag)?.get("Value")?.get(0)?;
    value.as_str().map(str::to_string).or_else(|| value.as_i64().map(|n| n.to_string()))
}

pub(super) fn number(row: &serde_json::Value, tag: &str) -> Option<i64> {
    let value = row.get(tag)?.get("Value")?.get(0)?;
    value.as_i64().or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

/// Plans one remote input: the studies its query finds (those `shard`
/// owns), their series of the wanted modalities and those series' instances.
///
/// # Errors
/// A request fails, or the query cannot be planned (a bad date, a window
/// still full at one minute).
pub fn plan(
    client: &Client,
    cfg: &DicomWebConfig,
    input: &RemoteInput,
    shard: Option<Shard>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Manifest, PlanError> {
    let name = input.describe();
    let http = |error| PlanError::Http { input: name.clone(), error };
    let query_error = |problem: String| PlanError::Query { input: name.clone(), problem };
    let mut pairs: Vec<(String, String)> = if input.query.is_empty() {
        cfg.query.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    } else {
        input.query.clone()
    };
    let today = now.date_naive();
    let mut window = None;
    for (key, value) in &mut pairs {
        if key == "StudyDate" {
            let w = window_of(value, today).ok_or_else(|| {
                query_error(format!("StudyDate {value:?} is not YYYYMMDD, a range, today, yesterday or last-night"))
            })?;
            *value = w.study_date();
            window = Some(w);
        }
        if key == "offset" || key == "limit" {
            return Err(query_error(format!("{key} is set by nightscreen (it splits windows instead of paging)")));
        }
    }
    let mut requests = 0u32;
    let mut rows = Vec::new();
    let mut windows = vec![window];
    while let Some(window) = windows.pop() {
        let mut asked = pairs.clone();
        if let Some(w) = window {
            asked.retain(|(k, _)| k != "StudyDate" && k != "StudyTime");
            asked.push(("StudyDate".into(), w.study_date()));
            if let Some(time) = w.study_time() {
                asked.push(("StudyTime".into(), time));
            }
        }
        asked.push(("limit".into(), cfg.window_max_results.to_string()));
        requests += 1;
        let found = client.search(&format!("studies?{}", query_string(&asked))).map_err(http)?;
        if found.len() < cfg.window_max_results as usize {
            rows.extend(found);
            continue;
        }
        match window.and_then(|w| w.split()) {
            Some((a, b)) => windows.extend([Some(b), Some(a)]),
            None => {
                return Err(query_error(format!(
                    "{} studies came back for {}: the server may be cutting the answer short; narrow the query \
                     or raise window_max_results",
                    found.len(),
                    window.map_or("the query".to_string(), |w| format!(
                        "StudyDate {} {}",
                        w.study_date(),
                        w.study_time().unwrap_or_default()
                    ))
                )))
            }
        }
    }
    let mut uids: Vec<(StudyUid, Option<u32>)> = rows
        .iter()
        .filter_map(|row| {
            let uid = text(row, "0020000D")?;
            Some((StudyUid::new(&uid), number(row, "00201208").and_then(|n| u32::try_from(n).ok())))
        })
        .collect();
    uids.sort();
    uids.dedup_by(|a, b| a.0 == b.0);
    uids.retain(|(study, _)| shard.is_none_or(|s| s.owns(study.as_str())));
    let (studies, searches) = super::instances::plan_studies(client, cfg, &uids).map_err(http)?;
    requests += searches;
    Ok(Manifest {
        input: name,
        source: input.source.clone(),
        url: cfg.url.clone(),
        query: pairs,
        planned_at: now,
        requests,
        studies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        parse_date(s).expect("date")
    }

    #[test]
    fn relative_dates_resolve_against_today_and_ranges_parse() {
        let today = day("20261124");
        assert_eq!(window_of("last-night", today).map(|w| w.study_date()), Some("20261123-20261124".into()));
        assert_eq!(window_of("yesterday", today).map(|w| w.study_date()), Some("20261123".into()));
        assert_eq!(
            window_of("20261101-20261130", today).map(|w| (w.from, w.to)),
            Some((day("20261101"), day("20261130")))
        );
        assert!(window_of("20261130-20261101", today).is_none());
        assert!(window_of("soon", today).is_none());
    }

    #[test]
    fn a_full_window_splits_by_days_then_by_time_down_to_one_minute() {
        let w = Window { from: day("20261101"), to: day("20261104"), minutes: None };
        let (a, b) = w.split().expect("split");
        assert_eq!((a.study_date(), b.study_date()), ("20261101-20261102".into(), "20261103-20261104".into()));
        let one = Window { from: day("20261101"), to: day("20261101"), minutes: None };
        let (am, pm) = one.split().expect("split");
        assert_eq!((am.study_time(), pm.study_time()), (Some("0000-115959".into()), Some("1200-235959".into())));
        let mut w = am;
        let mut steps = 0;
        while let Some((first, _)) = w.split() {
            w = first;
            steps += 1;
        }
        assert_eq!(w.minutes, Some((0, 0)));
        assert!(steps <= 12, "{steps}");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query_string(&[("StudyDescription".into(), "*EYE & DR*".into())]),
            "StudyDescription=*EYE%20%26%20DR*"
        );
    }
}
