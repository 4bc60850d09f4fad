//! Pages nightscreen writes, opened in a real browser (headless Chromium):
//! the scripts run, the images load, and what a clinician sees is checked
//! from the DOM after the scripts ran. Screenshots are kept under
//! `target/tmp/browser/` for a look by eye.
//!
//! [`render`] is the reusable part: any page, any fragment, a screenshot
//! and the DOM back.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util;

/// Where screenshots are kept (the test's temporary folders are not).
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

/// Opens `page` + `fragment` (e.g. "#band=URGENT", or "") in headless
/// Chromium, lets scripts and image loads finish (virtual time), saves a
/// screenshot to `screenshot` and returns the DOM as serialised then.
/// Panics if Chromium fails or takes over a minute.
pub fn render(chromium: &Path, page: &Path, fragment: &str, screenshot: &Path) -> String {
    let page = page.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", page.display()));
    let mut url = String::from("file://");
    for c in page.to_string_lossy().chars() {
        match c {
            ' ' => url.push_str("%20"),
            '#' => url.push_str("%23"),
            '%' => url.push_str("%25"),
            '?' => url.push_str("%3F"),
            c => url.push(c),
        }
    }
    url.push_str(fragment);
    let profile = tempfile::tempdir().expect("profile dir");
    let dom_file = profile.path().join("dom.html");
    let _ = std::fs::remove_file(screenshot);
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--virtual-time-budget=10000",
            "--window-size=1400,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg("--dump-dom")
        .arg(&url)
        .stdout(std::fs::File::create(&dom_file).expect("dom file"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chromium took over 60 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium failed ({status}) on {url}");
    let dom = std::fs::read_to_string(&dom_file).expect("dom");
    assert!(dom.contains("</html>"), "no DOM from chromium for {url}: {dom:.200}");
    dom
}

/// A PNG that is more than a blank page.
fn assert_screenshot(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("screenshot {}: {e}", path.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
    assert!(bytes.len() > 20_000, "{} is only {} bytes: a blank page?", path.display(), bytes.len());
    eprintln!("screenshot: {}", path.display());
}

/// The value of attribute `name` in the start tag `tag` (text from `<` to `>`).
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    tag[at..].split('"').next()
}

/// Every start tag `<name ...>` in the DOM.
fn tags<'a>(dom: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name} ");
    dom.match_indices(&open).filter_map(|(i, _)| dom[i..].find('>').map(|end| &dom[i..=i + end])).collect()
}

/// The worklist's rows as (accession, band, visible), in page order.
fn page_rows(dom: &str) -> Vec<(String, String, bool)> {
    tags(dom, "tr")
        .into_iter()
        .filter(|t| attr(t, "data-rank").is_some())
        .map(|t| {
            let acc = attr(t, "data-accession").unwrap_or_default().to_string();
            let band = attr(t, "data-band").unwrap_or_default().to_string();
            (acc, band, !t.contains(" hidden"))
        })
        .collect()
}

fn body_attr(dom: &str, name: &str) -> Option<String> {
    tags(dom, "body").first().and_then(|t| attr(t, name)).map(str::to_string)
}

/// The accession numbers and bands of `worklist.csv`, in its order.
fn csv_rows(out: &Path) -> Vec<(String, String)> {
    let mut reader = csv::Reader::from_path(out.join("worklist.csv")).expect("worklist.csv");
    let headers = reader.headers().expect("header").clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("no {name} column"));
    let (acc, band) = (col("accession_number"), col("band"));
    reader.records().map(|r| r.expect("row")).map(|r| (r[acc].to_string(), r[band].to_string())).collect()
}

/// Markup and every character HTML escaping must handle (no `=`: DICOM
/// reads it as the start of the name's ideographic form).
const HOSTILE_NAME: &str = "<script>document.body.classList.add(\"pwned\")</script>O'Brien & Co^\"Q\"";

/// Five synthetic studies; the first with a patient name full of markup,
/// the second with every image's codestream broken (a study with no image
/// to show).
fn input(dir: &Path) -> PathBuf {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let input = dir.join("in");
    util::synth_studies(&input, 5, 61);
    for file in util::every_entry(&input.join("study-000001")) {
        let mut obj = dicom_object::open_file(&file).expect("open synthetic image");
        obj.put(DataElement::new(tags::PATIENT_NAME, VR::PN, PrimitiveValue::from(HOSTILE_NAME)));
        obj.write_to_file(&file).expect("write");
    }
    for file in util::every_entry(&input.join("study-000002")) {
        let mut bytes = std::fs::read(&file).expect("read");
        // The JPEG start-of-image marker, zeroed: the header reads, the pixels do not.
        let soi = bytes.windows(3).position(|w| w == [0xFF, 0xD8, 0xFF]).expect("a JPEG codestream");
        bytes[soi..soi + 3].fill(0);
        std::fs::write(&file, bytes).expect("write");
    }
    input
}

fn run(input: &Path, out: &Path, shadow: bool) {
    let mut cmd = util::nightscreen();
    cmd.args(["run", "--quiet", "--config", "configs/desp.toml", "--input"]).arg(input).arg("--out").arg(out);
    if shadow {
        cmd.arg("--shadow");
    }
    let r = cmd.output().expect("run");
    assert_eq!(r.status.code(), Some(1), "the broken study's files are errors: {}", String::from_utf8_lossy(&r.stderr));
}

#[test]
fn the_html_worklist_shows_the_csv_rows_in_order_with_every_thumbnail_and_working_filters() {
    let (Some(chromium), Some(_)) = (util::chromium(), util::onnxruntime()) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let input = input(dir.path());
    let out = dir.path().join("out");
    run(&input, &out, false);
    let shots = screenshot_dir();
    let html = out.join("worklist.html");

    // Escaped in the file itself: the markup in the name never reaches the parser as markup.
    let text = std::fs::read_to_string(&html).expect("worklist.html");
    assert!(!text.contains("<script>document.body"), "patient name written unescaped");
    assert!(text.contains("&lt;script&gt;document.body.classList.add(&quot;pwned&quot;)&lt;/script&gt;O&#39;Brien &amp; Co, &quot;Q&quot;"), "escaped name missing: {}", text.find("pwned").map_or("(no name)", |i| &text[i.saturating_sub(80)..(i + 80).min(text.len())]));
    assert!(
        !text.contains("http://") && !text.contains("https://") && !text.contains(" src=\"/"),
        "the page must need nothing from outside OUT"
    );

    let dom = render(&chromium, &html, "#images=all", &shots.join("worklist.png"));
    assert_screenshot(&shots.join("worklist.png"));
    assert!(!body_attr(&dom, "class").is_some_and(|c| c.contains("pwned")), "the name's script ran");
    assert!(dom.contains("O'Brien &amp; Co, \"Q\""), "the name is shown as text");
    let want = csv_rows(&out);
    assert_eq!(want.len(), 5, "{want:?}");
    let got = page_rows(&dom);
    let got_order: Vec<(String, String)> = got.iter().map(|(a, b, _)| (a.clone(), b.clone())).collect();
    assert_eq!(got_order, want, "page rows differ from worklist.csv");
    assert!(got.iter().all(|r| r.2), "no filter: every row visible");
    assert!(!dom.contains("id=\"shadow-banner\""), "no shadow banner outside shadow mode");

    // Every thumbnail file is on the page and loaded; 4 good studies × 4 images.
    let files: Vec<PathBuf> = util::every_entry(&out.join("thumbnails"));
    assert_eq!(files.len(), 16, "{files:?}");
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(
            nightscreen::sink::thumbnails::is_ours(name),
            "thumbnail named from something else than pseudonyms: {name}"
        );
    }
    assert_eq!(body_attr(&dom, "data-images-settled").as_deref(), Some("true"), "images never settled");
    assert_eq!(body_attr(&dom, "data-images-total").as_deref(), Some("16"));
    assert_eq!(body_attr(&dom, "data-images-loaded").as_deref(), Some("16"));
    assert_eq!(body_attr(&dom, "data-images-broken").as_deref(), Some("0"));
    let imgs = tags(&dom, "img");
    assert_eq!(imgs.len(), 16);
    assert!(imgs.iter().all(|t| attr(t, "data-state") == Some("loaded")), "{imgs:?}");
    assert_eq!(
        dom.matches("class=\"no-images\"").count(),
        1,
        "the unreadable study shows a placeholder, not a broken image"
    );

    // Filter by band and search by accession, driven through the fragment.
    let band = &want[0].1;
    let dom = render(&chromium, &html, &format!("#band={band}"), &shots.join("worklist-band.png"));
    let visible: Vec<String> = page_rows(&dom).into_iter().filter(|r| r.2).map(|r| r.1).collect();
    assert_eq!(visible.len(), want.iter().filter(|r| &r.1 == band).count(), "#band={band}");
    assert!(visible.iter().all(|b| b == band));
    assert_eq!(body_attr(&dom, "data-visible-rows"), Some(visible.len().to_string()));
    let accession = &want[2].0;
    let dom = render(&chromium, &html, &format!("#q={accession}"), &shots.join("worklist-search.png"));
    let visible: Vec<String> = page_rows(&dom).into_iter().filter(|r| r.2).map(|r| r.0).collect();
    assert_eq!(visible.as_slice(), std::slice::from_ref(accession), "#q={accession}");
    let dom = render(&chromium, &html, "#band=NO_SUCH_BAND", &shots.join("worklist-none.png"));
    assert!(page_rows(&dom).iter().all(|r| !r.2), "an unknown band shows nothing");

    // The image check can fail: a thumbnail gone from the share is counted
    // as broken and shown as text.
    std::fs::remove_file(&files[0]).expect("remove a thumbnail");
    let dom = render(&chromium, &html, "#images=all", &shots.join("worklist-missing.png"));
    assert_eq!(body_attr(&dom, "data-images-broken").as_deref(), Some("1"));
    assert_eq!(body_attr(&dom, "data-images-loaded").as_deref(), Some("15"));
    assert_eq!(dom.matches("class=\"missing\"").count(), 1, "a missing thumbnail is shown as text");
}

#[test]
fn a_shadow_run_page_carries_the_banner() {
    let (Some(chromium), Some(_)) = (util::chromium(), util::onnxruntime()) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input, 2, 62);
    let out = dir.path().join("out");
    let r = util::nightscreen()
        .args(["run", "--quiet", "--shadow", "--config", "configs/desp.toml", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let shot = screenshot_dir().join("worklist-shadow.png");
    let dom = render(&chromium, &out.join("worklist.html"), "", &shot);
    assert_screenshot(&shot);
    let banner = dom.find("id=\"shadow-banner\"").map(|i| &dom[i..]).expect("shadow banner");
    assert!(banner[..200.min(banner.len())].contains(nightscreen::sink::worklist::SHADOW_NOTICE), "{:.200}", banner);
    assert_eq!(body_attr(&dom, "data-shadow").as_deref(), Some("true"));
    assert_eq!(page_rows(&dom).len(), 2);
}

/// A shadow pilot's two pages: the evaluation report (`nightscreen
/// evaluate`) with its plots decoded and the banner, and the worklist with
/// one occlusion map over exactly each image that can decide a referral
/// (DESP's thresholds, not only the card's p(r3) ≥ 0.5), and none under
/// `--no-explain`.
#[test]
fn the_evaluation_report_renders_and_the_worklist_shows_attention_maps() {
    let (Some(chromium), Some(_)) = (util::chromium(), util::onnxruntime()) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    util::synth_studies(&input, 40, 4);
    let run = |extra: &[&str]| {
        let r = util::nightscreen()
            .args(["run", "--quiet", "--shadow", "--force", "--config", "configs/desp.toml", "--input"])
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .expect("run");
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    };
    run(&[]);
    let evaluate = util::nightscreen()
        .args(["evaluate", "--resamples", "100", "--results"])
        .arg(&out)
        .arg("--reference")
        .arg(input.join("truth.csv"))
        .output()
        .expect("evaluate");
    assert!(evaluate.status.success(), "{}", String::from_utf8_lossy(&evaluate.stderr));

    let shots = screenshot_dir();
    let dom = render(&chromium, &out.join("evaluation/report.html"), "", &shots.join("evaluation-report.png"));
    assert_screenshot(&shots.join("evaluation-report.png"));
    assert_eq!(body_attr(&dom, "data-images").as_deref(), Some("4"), "four plots on the page");
    assert_eq!(body_attr(&dom, "data-images-loaded").as_deref(), Some("4"), "every plot decoded");
    assert!(dom.contains("id=\"shadow-banner\""), "a shadow run's report says so");
    for table in ["per-eye", "per-study"] {
        let at = dom.find(&format!("id=\"{table}\"")).unwrap_or_else(|| panic!("no {table} table"));
        let rows = tags(&dom[at..at + dom[at..].find("</table>").expect("table end")], "tr");
        let targets: Vec<&str> = rows.iter().filter_map(|t| attr(t, "data-target")).collect();
        assert_eq!(targets, ["referable", "r3", "m1", "ungradable"], "{table}");
    }

    // One map per image that can decide a referral (DESP: gradable and at
    // an R3, referable or M1 threshold), each a 4 × 4 grid.
    let images = util::read_table(&out, "images");
    let cfg = nightscreen::config::Config::load(&util::root().join("configs/desp.toml")).expect("desp.toml");
    let t = &cfg.triage.desp;
    let outputs = util::outputs(&images);
    let refers = |o: &Vec<f32>| {
        o[5] >= t.gradable_at_least
            && (o[3] >= t.r3_at_least || o[2] + o[3] >= t.referable_at_least || o[4] >= t.m1_at_least)
    };
    let explained = outputs.iter().filter(|o| refers(o)).count();
    assert!(
        outputs.iter().any(|o| refers(o) && o[3] < 0.5),
        "the fixed set has no referring image under the card's own p(r3) >= 0.5"
    );
    let dom = render(&chromium, &out.join("worklist.html"), "#images=all", &shots.join("worklist-attention.png"));
    let maps: Vec<&str> = dom
        .match_indices("class=\"attention\"")
        .map(|(i, _)| &dom[i..i + dom[i..].find("</div>").expect("map end")])
        .collect();
    assert_eq!(maps.len(), explained, "one occlusion map per explained image");
    assert!(maps.iter().all(|m| m.matches("<i ").count() == 16), "4 × 4 cells each");
    assert!(
        maps.iter()
            .all(|m| m.contains("opacity: 0.6") || m.contains("opacity:0.6") || m.contains("data-flat=\"true\"")),
        "each map tints its strongest cell fully, or says that hiding no single part lowered the score"
    );

    run(&["--no-explain"]);
    let page = std::fs::read_to_string(out.join("worklist.html")).expect("worklist.html");
    assert!(!page.contains("class=\"attention\""), "--no-explain makes no maps");
}
