//! `OUT/worklist.html`: the graders' worklist as one self-contained page.
//!
//! The same rows in the same order as `worklist.csv` (built by
//! [`super::worklist`]), with band colours and the band in words, each
//! eye's grade, the reason, the patient, and the study's thumbnails
//! (`thumbnails/`, by relative path). Style and script are inline and the
//! page fetches nothing else, so it opens from a file share with no server
//! or network. Every value from an input is HTML-escaped here; the script
//! only reads data attributes and writes text, never markup.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use super::thumbnails::{self, ThumbEntry};
use super::worklist::{WorklistRow, SHADOW_NOTICE};
use super::ModelStamp;
use crate::error::Result;
use crate::privacy::PseudonymKey;
use crate::triage::{Bands, Grade};

const CSS: &str = include_str!("assets/worklist.css");
const JS: &str = include_str!("assets/worklist.js");

/// File name under OUT.
pub const FILE_NAME: &str = "worklist.html";

/// The page's provenance header: which run, software and models, when.
pub struct PageInfo<'a> {
    pub run_id: &'a str,
    pub software_version: &'a str,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    pub attempts: u32,
    pub models: &'a [ModelStamp],
    /// The configured bands, most urgent first (the filter's checkboxes).
    pub bands: &'a Bands,
    pub shadow: bool,
}

/// Escapes text for HTML element content and double- or single-quoted
/// attribute values alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "FAMILY^GIVEN^MIDDLE" (DICOM PN) as "FAMILY, GIVEN MIDDLE".
fn person_name(pn: &str) -> String {
    let mut parts = pn.split('=').next().unwrap_or("").split('^').map(str::trim);
    let family = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.filter(|p| !p.is_empty()).collect();
    match (family.is_empty(), rest.is_empty()) {
        (_, true) => family.to_string(),
        (true, false) => rest.join(" "),
        (false, false) => format!("{family}, {}", rest.join(" ")),
    }
}

/// Right eye first, macula before disc, then frame: the order graders read.
fn image_order(t: &ThumbEntry) -> (u8, u8, u32, String) {
    (t.eye.reading_order(), t.field.reading_order(), t.frame, t.file.clone())
}

fn eye_cell(page: &mut String, grade: Option<Grade>) {
    match grade {
        None => page.push_str("<td><span class=\"sub\">not graded</span></td>"),
        Some(grade) => {
            let _ = write!(
                page,
                "<td><span class=\"grade\">{}</span><span class=\"words\">{}</span></td>",
                escape(&grade.to_string()),
                escape(&grade.words())
            );
        }
    }
}

fn images_cell(page: &mut String, thumbs: Option<&Vec<&ThumbEntry>>, row: &WorklistRow<'_>) {
    page.push_str("<td><div class=\"images\">");
    match thumbs {
        Some(list) if !list.is_empty() => {
            for t in list {
                let mut caption = [t.eye.eye_words().unwrap_or("eye not recorded"), t.field.as_str()]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ");
                if t.outside_domain {
                    caption.push_str(" — not graded: outside the model's domain");
                }
                let _ = write!(
                    page,
                    "<figure><div class=\"frame\"><img class=\"thumb\" src=\"{dir}/{file}\" width=\"{w}\" height=\"{h}\" alt=\"{alt}\" loading=\"lazy\" decoding=\"async\">",
                    dir = thumbnails::DIR,
                    file = escape(&t.file),
                    w = t.width,
                    h = t.height,
                    alt = escape(&caption),
                );
                if let Some(map) = &t.attention {
                    attention_overlay(page, map);
                }
                let _ = write!(page, "</div><figcaption>{}</figcaption></figure>", escape(&caption));
            }
        }
        _ => {
            let why = if row.files_failed > 0 {
                format!("no images to show: {} file(s) could not be read", row.files_failed)
            } else {
                "no images to show".to_string()
            };
            let _ = write!(page, "<span class=\"no-images\">{}</span>", escape(&why));
        }
    }
    page.push_str("</div></td>");
}

/// The occlusion map over its thumbnail: one translucent cell per grid
/// cell, the strongest fully tinted. The model saw the whole frame
/// stretched to its input, so the grid lies over the whole thumbnail.
///
/// When hiding no single cell lowers the score, nothing is tinted and the
/// map says so (`data-flat`): the evidence is spread over the frame, which a
/// grader should know rather than read an empty overlay as "nothing here".
fn attention_overlay(page: &mut String, map: &thumbnails::AttentionMap) {
    let strongest = map.cells.iter().copied().fold(0.0f32, f32::max);
    let (title, flat) = if strongest > 0.0 {
        let title = format!(
            "Occlusion map: the brighter the cyan, the further p({}) = {:.2} fell when the model could not see that part (most: {:.2})",
            map.explains, map.score, strongest
        );
        (title, "")
    } else {
        let title = format!(
            "Occlusion map: hiding no single part lowered p({}) = {:.2}; the evidence is spread over the frame",
            map.explains, map.score
        );
        (title, " data-flat=\"true\"")
    };
    let _ = write!(
        page,
        "<div class=\"attention\"{flat} title=\"{}\" style=\"grid-template-columns:repeat({},1fr)\">",
        escape(&title),
        map.grid.clamp(1, 16)
    );
    for &cell in &map.cells {
        let weight = if strongest > 0.0 { (cell / strongest).clamp(0.0, 1.0) } else { 0.0 };
        let _ = write!(page, "<i style=\"opacity:{:.2}\"></i>", 0.6 * weight);
    }
    page.push_str("</div>");
}

fn header(page: &mut String, info: &PageInfo<'_>, rows: &[WorklistRow<'_>]) {
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let models = info
        .models
        .iter()
        .map(|m| format!("{} {} (sha256 {})", m.id, m.version, m.sha256.get(..12).unwrap_or(&m.sha256)))
        .collect::<Vec<_>>()
        .join("; ");
    let mut counts: Vec<String> = Vec::new();
    for (band, name) in info.bands.iter() {
        let n = rows.iter().filter(|r| r.study.band == band).count();
        counts.push(format!("{name} {n}"));
    }
    page.push_str("<header>");
    if info.shadow {
        let _ = write!(
            page,
            "<div class=\"shadow-banner\" id=\"shadow-banner\" role=\"alert\">{}</div>",
            escape(SHADOW_NOTICE)
        );
    }
    let _ = write!(
        page,
        "<h1>Screening worklist — {} stud{}</h1><dl class=\"provenance\">",
        rows.len(),
        if rows.len() == 1 { "y" } else { "ies" }
    );
    for (label, value) in [
        ("Run", info.run_id.to_string()),
        ("Started", time(info.started_at)),
        (
            "Finished",
            format!(
                "{}{}",
                time(info.finished_at),
                if info.attempts > 1 { format!(" (after {} attempts)", info.attempts) } else { String::new() }
            ),
        ),
        ("Software", format!("nightscreen {}", info.software_version)),
        ("Model(s)", models),
        ("Bands", counts.join(", ")),
    ] {
        let _ = write!(page, "<dt>{}</dt><dd>{}</dd>", escape(label), escape(&value));
    }
    page.push_str("</dl></header>");
}

fn controls(page: &mut String, info: &PageInfo<'_>, rows: usize) {
    page.push_str("<form class=\"controls\" onsubmit=\"return false\"><fieldset><legend>Bands</legend>");
    for (band, name) in info.bands.iter() {
        let _ = write!(page, "<label class=\"{}\"><input type=\"checkbox\" name=\"band\" value=\"{b}\" checked> <span class=\"band\">{b}</span></label>", info.bands.colour_class(band), b = escape(name));
    }
    let _ = write!(
        page,
        "</fieldset><label>Accession or patient ID <input type=\"search\" id=\"q\" autocomplete=\"off\"></label>\
         <label><input type=\"checkbox\" id=\"show-attention\" checked> model attention (occlusion maps)</label>\
         <span><span id=\"shown\">{rows}</span> of {rows} studies shown</span></form>"
    );
}

/// The whole page: one table row per worklist row, each drawn from the
/// row and the study it borrows.
pub fn render(rows: &[WorklistRow<'_>], thumbs: &[ThumbEntry], key: &PseudonymKey, info: &PageInfo<'_>) -> String {
    let mut by_study: HashMap<&str, Vec<&ThumbEntry>> = HashMap::new();
    for t in thumbs {
        by_study.entry(t.study.as_str()).or_default().push(t);
    }
    for list in by_study.values_mut() {
        list.sort_by_key(|t| image_order(t));
        list.dedup_by(|a, b| a.file == b.file);
    }
    let mut page = String::with_capacity(4096 + rows.len() * 1500);
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = writeln!(
        page,
        "<title>{}Worklist {}</title><style>{CSS}</style></head>",
        if info.shadow { "SHADOW — " } else { "" },
        escape(info.run_id)
    );
    let _ = write!(page, "<body data-shadow=\"{}\" data-rows=\"{}\">", info.shadow, rows.len());
    header(&mut page, info, rows);
    controls(&mut page, info, rows.len());
    page.push_str("<main><table id=\"worklist\"><thead><tr><th>Rank</th><th>Band</th><th>Right eye</th><th>Left eye</th><th>Reason</th><th>Patient</th><th>Accession</th><th>Study</th><th>Images</th></tr></thead><tbody>\n");
    for row in rows {
        let group = thumbnails::study_group(key, &row.study.header);
        let _ = write!(
            page,
            "<tr class=\"{class}\" data-rank=\"{rank}\" data-band=\"{band}\" data-accession=\"{acc}\" data-patient-id=\"{pid}\"><td class=\"rank\">{rank}</td><td><span class=\"band\">{band}</span>{score}</td>",
            class = info.bands.colour_class(row.study.band),
            rank = row.rank,
            band = escape(row.band),
            acc = escape(row.accession_number),
            pid = escape(row.patient_id),
            score = row.score.map(|s| format!("<span class=\"sub\">score {s:.2}</span>")).unwrap_or_default(),
        );
        eye_cell(&mut page, row.right_eye);
        eye_cell(&mut page, row.left_eye);
        let _ = write!(page, "<td>{}", escape(row.reason));
        if !row.notice.is_empty() {
            let _ = write!(page, "<span class=\"sub shadow-note\">{}</span>", escape(row.notice));
        }
        let _ = write!(
            page,
            "</td><td>{name}<span class=\"sub\">ID {pid}</span></td><td>{acc}</td><td>{date}<span class=\"sub\">{desc}</span><span class=\"sub\">{n} image(s) scored{failed}</span></td>",
            name = escape(&person_name(row.patient_name)),
            pid = escape(row.patient_id),
            acc = escape(row.accession_number),
            date = escape(&row.study_datetime.as_deref().map(|d| d.replacen('T', " ", 1)).unwrap_or_else(|| "date not recorded".into())),
            desc = escape(row.study_description),
            n = row.images_scored,
            failed = if row.files_failed > 0 { format!(", {} unreadable", row.files_failed) } else { String::new() },
        );
        images_cell(&mut page, group.as_deref().and_then(|g| by_study.get(g)), row);
        page.push_str("</tr>\n");
    }
    if rows.is_empty() {
        page.push_str("<tr><td colspan=\"9\">No studies in this run.</td></tr>");
    }
    let _ = writeln!(page, "</tbody></table></main><script>{JS}</script></body></html>");
    page
}

/// Writes `OUT/worklist.html` (via a temporary file).
///
/// # Errors
/// The file cannot be written.
pub fn write(
    out: &Path,
    rows: &[WorklistRow<'_>],
    thumbs: &[ThumbEntry],
    key: &PseudonymKey,
    info: &PageInfo<'_>,
) -> Result<()> {
    super::write_atomically(&out.join(FILE_NAME), render(rows, thumbs, key, info).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    use crate::triage::{Band, StudyDetail, StudyResult};

    fn study(name: &str, accession: &str, band: Band, uid: &str) -> StudyResult {
        let header = crate::message::Header {
            study_uid: crate::message::StudyUid::new(uid),
            patient_name: name.into(),
            patient_id: "P1".into(),
            accession_number: accession.into(),
            ..Default::default()
        };
        StudyResult {
            rank: 1,
            band,
            score: Some(0.5),
            reason: "R3 suspected <b>".into(),
            header: std::sync::Arc::new(header),
            modalities: vec![],
            images_scored: 0,
            files_failed: 2,
            files_skipped: 0,
            models: vec![],
            detail: StudyDetail::None,
        }
    }

    #[test]
    fn every_input_value_is_escaped_and_a_study_without_images_says_so() {
        let key = PseudonymKey::from_hex(&"cd".repeat(32), "test").expect("key");
        let bands = Bands::new(vec!["URGENT".to_string(), "NO_DISEASE".to_string()]);
        let band = |name: &str| bands.find(name).expect("band");
        let mut studies = [
            study("<script>alert(1)</script>^A&B", "ACC\"><img src=x onerror=alert(1)>", band("URGENT"), "1.2.3"),
            study("X^Y", "A2", band("NO_DISEASE"), "1.2.4"),
        ];
        let eye = |grade: &str| crate::triage::desp::EyeOutcome {
            grade: grade.parse().expect("grade"),
            probs: Default::default(),
        };
        studies[1].detail = StudyDetail::Desp { right: Some(eye("R3M1")), left: None };
        let rows = super::super::worklist::rows(&studies, &bands, true);
        let thumb = ThumbEntry {
            study: thumbnails::study_group(&key, &studies[1].header).expect("group"),
            file: "f-00000.jpg".into(),
            eye: crate::dicom::laterality::Laterality::Left,
            field: crate::dicom::laterality::FundusField::Disc,
            frame: 0,
            width: 192,
            height: 144,
            attention: Some(thumbnails::AttentionMap {
                explains: "r3".into(),
                score: 0.9,
                grid: 2,
                cells: vec![0.4, 0.0, 0.2, 0.1],
            }),
            outside_domain: true,
        };
        let info = PageInfo {
            run_id: "r<1>",
            software_version: "0",
            started_at: chrono::Utc::now(),
            finished_at: chrono::Utc::now(),
            attempts: 2,
            models: &[],
            bands: &bands,
            shadow: true,
        };
        let page = render(&rows, &[thumb], &key, &info);
        assert!(
            !page.contains("<script>alert")
                && !page.contains("<img src=x")
                && !page.contains("<b>")
                && !page.contains("r<1>"),
            "unescaped input"
        );
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;, A&amp;B"));
        assert!(page.contains("data-accession=\"ACC&quot;&gt;&lt;img src=x onerror=alert(1)&gt;\""));
        assert!(page.contains("no images to show: 2 file(s) could not be read"));
        assert!(page.contains("src=\"thumbnails/f-00000.jpg\"") && page.contains("left eye, disc"));
        assert!(page.contains("<figcaption>left eye, disc — not graded: outside the model&#39;s domain</figcaption>"));
        assert!(
            page.contains("grid-template-columns:repeat(2,1fr)")
                && page.contains(
                    "<i style=\"opacity:0.60\"></i><i style=\"opacity:0.00\"></i><i style=\"opacity:0.30\"></i>"
                ),
            "attention cells, strongest fully tinted"
        );
        assert!(page.contains("id=\"shadow-banner\"") && page.contains("after 2 attempts"));
        assert_eq!(page.matches("<script>").count(), 1, "only the page's own script");
        assert!(
            page.contains(
                "<span class=\"grade\">R3M1</span><span class=\"words\">proliferative retinopathy; maculopathy</span>"
            ) && page.contains("not graded"),
            "eye cells from the typed grade"
        );
        assert!(
            page.contains("<tr class=\"band-urgent\"") && page.contains("<tr class=\"band-no-disease\""),
            "DESP bands keep their colours"
        );
        assert!(page.contains("URGENT 1, NO_DISEASE 1"), "band counts");
    }

    #[test]
    fn a_map_where_hiding_no_part_lowered_the_score_says_so() {
        let flat =
            thumbnails::AttentionMap { explains: "r3".into(), score: 0.7, grid: 2, cells: vec![-0.1, 0.0, -0.2, 0.0] };
        let mut page = String::new();
        attention_overlay(&mut page, &flat);
        assert!(page.contains("data-flat=\"true\"") && page.contains("hiding no single part lowered p(r3) = 0.70"));
        assert_eq!(page.matches("opacity:0.00").count(), 4, "{page}");
        let mut page = String::new();
        attention_overlay(&mut page, &thumbnails::AttentionMap { cells: vec![0.0, 0.1, 0.0, 0.0], ..flat });
        assert!(!page.contains("data-flat") && page.contains("opacity:0.60"), "{page}");
    }

    #[test]
    fn names_and_grades_read_as_words() {
        assert_eq!(person_name("WRIGHT^PATRICIA^ANN"), "WRIGHT, PATRICIA ANN");
        assert_eq!(person_name("WRIGHT"), "WRIGHT");
        assert_eq!(person_name("^PAT"), "PAT");
        // Grades are typed: their words are `Grade::words` (tested with it in
        // triage::desp::grade); text that is not a grade no longer reaches the page.
        assert_eq!("R3M1".parse::<Grade>().map(Grade::words).as_deref(), Ok("proliferative retinopathy; maculopathy"));
        assert_eq!(Grade::Ungradable.words(), "ungradable");
        assert!("??".parse::<Grade>().is_err());
    }
}
