//! Planning each study's instances. Studies are asked for in batches: one
//! instance search with a UID list (`StudyInstanceUID=a,b,…`, QIDO-RS's
//! list matching) answers many studies for a fraction of the server's cost
//! of one search each. Every study's rows are checked against the instance
//! count its study row declared; a study whose count disagrees, that
//! declared none, or whose batch the server refused or filled, is asked
//! again on its own, so a server without list matching only costs time.

use std::collections::{BTreeMap, HashMap};

use super::client::{Client, HttpError};
use super::config::DicomWebConfig;
use super::manifest::{PlannedInstance, PlannedSeries, PlannedStudy};
use super::plan::{encode, number, text};
use crate::message::{SeriesUid, SopInstanceUid, StudyUid};

/// Modality, transfer syntax, instance number and the study's UID, beyond
/// what an instance search returns by default.
const FIELDS: &str = "includefield=00080060&includefield=00083002&includefield=00200013&includefield=0020000D";

/// Query strings stay under this length: servers and proxies refuse long
/// request lines (nginx and Apache at 8 KiB by default).
const QUERY_MAX: usize = 4000;

/// A study to plan and the instance count its study row declared.
pub type Wanted = (StudyUid, Option<u32>);

/// Each study's series of the wanted modalities and their instances, in
/// the order of `studies`; studies with none left out. Also the number of
/// searches made.
///
/// # Errors
/// A study's own search fails (after retries).
pub fn plan_studies(
    client: &Client,
    cfg: &DicomWebConfig,
    studies: &[Wanted],
) -> Result<(Vec<PlannedStudy>, u32), HttpError> {
    let batches = batches(studies, cfg.window_max_results as usize, cfg.fetch_workers);
    let batched = parallel(cfg.fetch_workers, &batches, |batch| Ok(search_batch(client, cfg, batch)))?;
    let requests = batches.len() as u32;
    let mut answered: HashMap<&StudyUid, Vec<serde_json::Value>> = HashMap::new();
    for rows in batched.into_iter().flatten() {
        answered.extend(rows);
    }
    let alone: Vec<&Wanted> = studies.iter().filter(|(uid, _)| !answered.contains_key(uid)).collect();
    let searched = parallel(cfg.fetch_workers, &alone, |(study, _)| {
        let path = format!("studies/{}/instances?{FIELDS}", encode(study.as_str()));
        client.search(&path).map(|rows| (study, rows))
    })?;
    let requests = requests + alone.len() as u32;
    answered.extend(searched);
    let planned = studies
        .iter()
        .filter_map(|(study, count)| {
            let rows = answered.remove(study)?;
            study_from_rows(cfg, study, *count, rows)
        })
        .collect();
    Ok((planned, requests))
}

/// Consecutive studies with declared counts, as many per batch as the query
/// length allows, with fewer instances in all than a full answer, and
/// spread over at least `workers` batches (they are asked in parallel).
fn batches(studies: &[Wanted], max_rows: usize, workers: usize) -> Vec<Vec<&Wanted>> {
    let counted = studies.iter().filter(|w| w.1.is_some()).count();
    let per_batch = counted.div_ceil(workers.max(1)).max(2);
    let mut out: Vec<Vec<&Wanted>> = Vec::new();
    let (mut length, mut rows) = (0, 0);
    for wanted in studies {
        let Some(count) = wanted.1 else { continue };
        let count = count as usize;
        let extra = wanted.0.as_str().len() + 1;
        let fits = out.last().is_some_and(|b| !b.is_empty() && b.len() < per_batch)
            && length + extra <= QUERY_MAX
            && rows + count < max_rows;
        if !fits {
            out.push(Vec::new());
            (length, rows) = (FIELDS.len() + 64, 0);
        }
        if count >= max_rows {
            continue; // its own search: a batch holding it would come back full
        }
        if let Some(batch) = out.last_mut() {
            batch.push(wanted);
        }
        (length, rows) = (length + extra, rows + count);
    }
    out.retain(|b| b.len() > 1);
    out
}

/// The rows of each study in `batch` whose count matches what its study
/// row declared; `None` when the server refused or filled the batch.
fn search_batch<'a>(
    client: &Client,
    cfg: &DicomWebConfig,
    batch: &[&'a Wanted],
) -> Option<Vec<(&'a StudyUid, Vec<serde_json::Value>)>> {
    let list: Vec<&str> = batch.iter().map(|(uid, _)| uid.as_str()).collect();
    let limit = cfg.window_max_results;
    let path = format!("instances?StudyInstanceUID={}&{FIELDS}&limit={limit}", list.join(","));
    let rows = match client.search(&path) {
        Ok(rows) => rows,
        Err(e) => {
            log::debug!("a batched instance search failed, asking its studies one by one: {e}");
            return None;
        }
    };
    if rows.len() >= limit as usize {
        return None;
    }
    let mut by_study: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for row in rows {
        if let Some(study) = text(&row, "0020000D") {
            by_study.entry(study).or_default().push(row);
        }
    }
    Some(
        batch
            .iter()
            .filter_map(|(study, count)| {
                let rows = by_study.remove(study.as_str()).unwrap_or_default();
                (Some(rows.len() as u32) == *count).then_some((study, rows))
            })
            .collect(),
    )
}

/// One study's series of the wanted modalities and their instances.
fn study_from_rows(
    cfg: &DicomWebConfig,
    study: &StudyUid,
    instances_in_study: Option<u32>,
    rows: Vec<serde_json::Value>,
) -> Option<PlannedStudy> {
    let mut by_series: BTreeMap<SeriesUid, PlannedSeries> = BTreeMap::new();
    for row in rows {
        let (Some(series), Some(sop)) = (text(&row, "0020000E"), text(&row, "00080018")) else { continue };
        let modality = text(&row, "00080060").unwrap_or_default();
        if !cfg.modalities.is_empty() && !cfg.modalities.iter().any(|m| m.eq_ignore_ascii_case(&modality)) {
            continue;
        }
        let series = SeriesUid::new(&series);
        let entry = by_series.entry(series.clone()).or_insert_with(|| PlannedSeries {
            series,
            modality: modality.clone(),
            instances: Vec::new(),
        });
        entry.instances.push(PlannedInstance {
            sop: SopInstanceUid::new(&sop),
            sop_class: text(&row, "00080016").unwrap_or_default(),
            transfer_syntax: text(&row, "00083002"),
            instance_number: number(&row, "00200013"),
        });
    }
    let series: Vec<PlannedSeries> = by_series
        .into_values()
        .map(|mut s| {
            s.instances.sort_by(|a, b| (a.instance_number, &a.sop).cmp(&(b.instance_number, &b.sop)));
            s.instances.dedup_by(|a, b| a.sop == b.sop);
            s
        })
        .collect();
    (!series.is_empty()).then(|| PlannedStudy { study: study.clone(), instances_in_study, series })
}

/// `work` over `items` on `workers` threads, results in the items' order.
fn parallel<I: Sync, T: Send>(
    workers: usize,
    items: &[I],
    work: impl Fn(&I) -> Result<T, HttpError> + Sync,
) -> Result<Vec<T>, HttpError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<Vec<(usize, T)>, HttpError>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..workers.clamp(1, 16).min(items.len().max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { return Ok(done) };
                        done.push((i, work(item)?));
                    }
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join().unwrap_or_else(|_| {
                    Err(HttpError::Answer { what: "planning".into(), problem: "a planning thread failed".into() })
                })
            })
            .collect()
    });
    let mut out = Vec::new();
    for result in results {
        out.extend(result?);
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, t)| t).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(n: usize, count: Option<u32>) -> Vec<Wanted> {
        (0..n).map(|i| (StudyUid::new(&format!("1.2.826.0.1.3680043.8.498.{i:020}")), count)).collect()
    }

    #[test]
    fn batches_stay_under_the_query_length_and_a_full_answer_and_skip_studies_without_a_count() {
        let studies = wanted(100, Some(4));
        let made = batches(&studies, 1000, 1);
        assert!(made.len() > 1, "{} batches", made.len());
        for batch in &made {
            let length: usize = batch.iter().map(|(u, _)| u.as_str().len() + 1).sum();
            assert!(length + FIELDS.len() + 64 <= QUERY_MAX, "{length}");
        }
        assert_eq!(made.iter().map(Vec::len).sum::<usize>(), 100);
        let small_answers = batches(&studies, 10, 1);
        assert_eq!(batches(&studies, 1000, 50).len(), 50);
        assert!(small_answers.iter().all(|b| b.len() * 4 < 10), "{small_answers:?}");
        assert!(batches(&wanted(10, None), 1000, 4).is_empty());
        let mut mixed = wanted(3, Some(2));
        mixed.push((StudyUid::new("9.9"), Some(5000)));
        let made = batches(&mixed, 1000, 1);
        assert!(made.iter().flatten().all(|(u, _)| u.as_str() != "9.9"), "{made:?}");
    }
}
