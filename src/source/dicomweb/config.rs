//! `[sources.NAME]` tables and `dicomweb:NAME?key=value&…` inputs.
//!
//! Credentials are never in the config text or on the command line (both
//! are recorded in `run.json` and the audit trail): a username with a
//! password file, or a bearer token file, each of which may instead come
//! from an environment variable the table names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One named source of the config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    /// A DICOMweb server (QIDO-RS to plan, WADO-RS to fetch, STOW-RS to send).
    Dicomweb(DicomWebConfig),
}

/// `[sources.NAME] kind = "dicomweb"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DicomWebConfig {
    /// The DICOMweb root, e.g. `https://pacs.trust.nhs.uk/dicom-web`; no
    /// credentials in it.
    pub url: String,
    /// HTTP Basic authentication: the user, or the variable holding it.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub username_env: Option<String>,
    /// The password: a file holding it (first line), or a variable.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// A bearer token instead: a file holding it, or a variable.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub token_env: Option<String>,
    /// PEM file of the certificate authorities to trust for `https`
    /// (a hospital's own CA); default: the public web's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds to connect; default 10.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: f64,
    /// Seconds for one whole request, body included; default 120.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Further attempts after a failed request (5xx, reset, timeout);
    /// default 3, waiting `retry_wait_ms` × 2^attempt between them.
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_retry_wait")]
    pub retry_wait_ms: u64,
    /// Instances fetched at once; default 4.
    #[serde(default = "default_fetch_workers")]
    pub fetch_workers: usize,
    /// Fetched bytes held ahead of the pipeline, in MiB; default 64 (about
    /// 190 JPEG fundus photographs of 340 KB).
    #[serde(default = "default_fetch_budget")]
    pub fetch_budget_mib: u64,
    /// Series kept by their Modality (e.g. `["OP"]`); empty keeps all.
    /// Filtering here, per series, is exact where `ModalitiesInStudy` is
    /// only a hint some servers ignore.
    #[serde(default)]
    pub modalities: Vec<String>,
    /// QIDO-RS study query keys used when the input gives none, e.g.
    /// `{ StudyDate = "last-night" }`. `StudyDate` also takes `today`,
    /// `yesterday` and `last-night` (yesterday and today), taken at planning.
    #[serde(default = "default_query")]
    pub query: BTreeMap<String, String>,
    /// A study query returning this many rows is taken as cut off by the
    /// server: its date window is split in two and asked again (never paged
    /// with `offset`, which some servers get wrong). Default 1000.
    #[serde(default = "default_window_max")]
    pub window_max_results: u32,
}

fn default_connect_timeout() -> f64 {
    10.0
}
fn default_timeout() -> f64 {
    120.0
}
fn default_retries() -> u32 {
    3
}
fn default_retry_wait() -> u64 {
    500
}
fn default_fetch_workers() -> usize {
    4
}
fn default_fetch_budget() -> u64 {
    64
}
fn default_window_max() -> u32 {
    1000
}
fn default_query() -> BTreeMap<String, String> {
    BTreeMap::from([("StudyDate".to_string(), "last-night".to_string())])
}

impl DicomWebConfig {
    /// Makes relative file paths relative to the config file's folder.
    pub fn rebase(&mut self, base: &Path) {
        for path in [&mut self.password_file, &mut self.token_file, &mut self.ca_file].into_iter().flatten() {
            *path = base.join(&*path);
        }
    }

    /// Problems found without the network.
    pub fn problems(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(problem) = url_problem(&self.url) {
            out.push(format!("sources.{name}.url: {problem}"));
        }
        let basic = self.username.is_some() || self.username_env.is_some();
        let password = self.password_file.is_some() || self.password_env.is_some();
        let token = self.token_file.is_some() || self.token_env.is_some();
        if basic != password {
            out.push(format!(
                "sources.{name}: a username needs a password_file or password_env, and the other way round"
            ));
        }
        if basic && token {
            out.push(format!("sources.{name}: give a username and password or a token, not both"));
        }
        if self.fetch_workers == 0 || self.window_max_results == 0 {
            out.push(format!("sources.{name}: fetch_workers and window_max_results must be at least 1"));
        }
        if !(self.timeout_seconds > 0.0 && self.connect_timeout_seconds > 0.0) {
            out.push(format!("sources.{name}: timeouts must be positive"));
        }
        out
    }
}

/// Why a DICOMweb root URL cannot be used (never echoing it: it might
/// hold a password).
pub fn url_problem(url: &str) -> Option<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("not an http:// or https:// URL".into());
    };
    if scheme != "http" && scheme != "https" {
        return Some(format!("scheme {scheme:?} is not http or https"));
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Some("holds credentials: give them with username + password_file or token_file instead".into());
    }
    if authority.is_empty() {
        return Some("has no host".into());
    }
    if url.contains('?') || url.contains('#') {
        return Some("the root URL takes no query or fragment (put query keys in `query` or the input)".into());
    }
    None
}

/// `--input dicomweb:NAME?key=value&…`: a named source and its query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteInput {
    pub source: String,
    /// The query as typed (keys in order; empty: the table's `query`).
    pub query: Vec<(String, String)>,
}

impl RemoteInput {
    /// The prefix that marks an input as a DICOMweb query.
    pub const PREFIX: &'static str = "dicomweb:";

    /// Parses `dicomweb:NAME[?k=v&…]`; `None` when `text` is not one.
    ///
    /// # Errors
    /// The name is empty or a query pair has no `=`.
    pub fn parse(text: &str) -> Option<Result<Self, String>> {
        let rest = text.strip_prefix(Self::PREFIX)?;
        let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Some(Err(format!("input {text:?}: the source name must be letters, digits, - or _")));
        }
        let mut pairs = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Some(Err(format!("input {text:?}: query part {pair:?} has no '='")));
            };
            pairs.push((k.to_string(), v.to_string()));
        }
        Some(Ok(Self { source: name.to_string(), query: pairs }))
    }

    /// How run.json and the audit trail name it.
    pub fn describe(&self) -> String {
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if query.is_empty() {
            format!("{}{}", Self::PREFIX, self.source)
        } else {
            format!("{}{}?{}", Self::PREFIX, self.source, query.join("&"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_input_parses_its_name_and_query_in_order() {
        let input = RemoteInput::parse("dicomweb:pacs?StudyDate=20261123-20261124&ModalitiesInStudy=OP")
            .expect("remote")
            .expect("valid");
        assert_eq!(input.source, "pacs");
        assert_eq!(input.query[0], ("StudyDate".into(), "20261123-20261124".into()));
        assert_eq!(input.describe(), "dicomweb:pacs?StudyDate=20261123-20261124&ModalitiesInStudy=OP");
        assert!(RemoteInput::parse("/data/night").is_none());
        assert!(RemoteInput::parse("dicomweb:").expect("remote").is_err());
        assert!(RemoteInput::parse("dicomweb:p?StudyDate").expect("remote").is_err());
    }

    #[test]
    fn a_url_with_credentials_is_refused_without_echoing_them() {
        let problem = url_problem("https://user:hunter2@pacs/dicom-web").expect("refused");
        assert!(!problem.contains("hunter2"), "{problem}");
        assert!(url_problem("ftp://pacs").is_some());
        assert!(url_problem("http://127.0.0.1:8042/dicom-web").is_none());
    }
}
