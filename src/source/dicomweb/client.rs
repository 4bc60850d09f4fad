//! The HTTP side of a DICOMweb source: authentication, TLS, timeouts and
//! retries around QIDO-RS (JSON) and WADO-RS (multipart) requests, on a
//! blocking `ureq` agent shared by the fetch threads.
//!
//! Every error names the request by its path under the root and the
//! server's status and words; never the root URL's host part with
//! anything secret, never a credential.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use super::config::DicomWebConfig;

/// The `Accept` that makes a server send instances as stored: without
/// `transfer-syntax=*`, Orthanc transcodes JPEG to raw (17× the bytes, and
/// the DCT-scaled decode is lost).
pub const WADO_ACCEPT: &str = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";

/// How the server is told who we are.
#[derive(Clone)]
enum Auth {
    None,
    /// A ready `Authorization` header value.
    Header(String),
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The server answered with an error status.
    #[error("{what}: HTTP {status}{}", if .words.is_empty() { String::new() } else { format!(" ({})", .words) })]
    Status { what: String, status: u16, words: String },
    /// No answer: refused, reset, timed out, TLS.
    #[error("{what}: {problem}")]
    Transport { what: String, problem: String },
    /// An answer we cannot use (not JSON, no boundary).
    #[error("{what}: {problem}")]
    Answer { what: String, problem: String },
}

impl HttpError {
    /// Worth another attempt: the server or the network failed, not the request.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::Transport { .. } => true,
            Self::Answer { .. } => false,
        }
    }
}

/// Why a source cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("sources.{source_name}: cannot read {what} {path}: {error}")]
    Secret { source_name: String, what: &'static str, path: std::path::PathBuf, error: std::io::Error },
    #[error("sources.{source_name}: environment variable {var} ({what}) is not set")]
    MissingEnv { source_name: String, what: &'static str, var: String },
    #[error("sources.{source_name}: {problem}")]
    Tls { source_name: String, problem: String },
}

/// A configured DICOMweb server.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    root: Arc<str>,
    auth: Auth,
    retries: u32,
    retry_wait: Duration,
}

fn secret(
    name: &str,
    what: &'static str,
    file: Option<&std::path::Path>,
    env: Option<&str>,
) -> Result<Option<String>, SetupError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|error| SetupError::Secret {
            source_name: name.to_string(),
            what,
            path: path.to_path_buf(),
            error,
        })?;
        return Ok(Some(text.lines().next().unwrap_or("").to_string()));
    }
    if let Some(var) = env {
        return std::env::var(var).map(Some).map_err(|_| SetupError::MissingEnv {
            source_name: name.to_string(),
            what,
            var: var.to_string(),
        });
    }
    Ok(None)
}

impl Client {
    /// Reads the credentials and builds the agent (no request yet).
    ///
    /// # Errors
    /// A credential file or variable is missing, or the CA file is unusable.
    pub fn new(name: &str, cfg: &DicomWebConfig) -> Result<Self, SetupError> {
        use base64::Engine;
        let user = match (&cfg.username, &cfg.username_env) {
            (Some(user), _) => Some(user.clone()),
            (None, env) => secret(name, "username", None, env.as_deref())?,
        };
        let password = secret(name, "password", cfg.password_file.as_deref(), cfg.password_env.as_deref())?;
        let token = secret(name, "token", cfg.token_file.as_deref(), cfg.token_env.as_deref())?;
        let auth = match (user, password, token) {
            (Some(user), Some(password), _) => {
                let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Auth::Header(format!("Basic {pair}"))
            }
            (_, _, Some(token)) => Auth::Header(format!("Bearer {}", token.trim())),
            _ => Auth::None,
        };
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs_f64(cfg.connect_timeout_seconds)))
            .timeout_global(Some(Duration::from_secs_f64(cfg.timeout_seconds)))
            .max_redirects(0)
            .user_agent(format!("nightscreen/{}", crate::VERSION));
        if let Some(ca) = &cfg.ca_file {
            let tls = |problem: String| SetupError::Tls { source_name: name.to_string(), problem };
            let pem = std::fs::read(ca).map_err(|e| tls(format!("cannot read ca_file {}: {e}", ca.display())))?;
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls(format!("ca_file {} is not PEM: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(tls(format!("ca_file {} holds no certificate", ca.display())));
            }
            let config = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)));
            builder = builder.tls_config(config.build());
        }
        Ok(Self {
            agent: builder.build().into(),
            root: cfg.url.trim_end_matches('/').into(),
            auth,
            retries: cfg.retries,
            retry_wait: Duration::from_millis(cfg.retry_wait_ms),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.root)
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent.
    fn retrying<T>(&self, mut attempt: impl FnMut() -> Result<T, HttpError>) -> Result<T, HttpError> {
        let mut tries = 0;
        loop {
            match attempt() {
                Err(e) if e.is_transient() && tries < self.retries => {
                    std::thread::sleep(self.retry_wait * 2u32.saturating_pow(tries));
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// Sends a GET and returns the response when its status is 2xx; `what`
    /// names it in errors.
    fn get(&self, path: &str, accept: &str, what: &str) -> Result<ureq::http::Response<ureq::Body>, HttpError> {
        let what = what.to_string();
        let mut request = self.agent.get(self.url(path)).header("Accept", accept);
        if accept == WADO_ACCEPT {
            // Instances are mostly compressed pixels already: a server that
            // gzips them (Orthanc does when asked) burns ~6 ms of CPU per
            // fundus photograph for nothing.
            request = request.header("Accept-Encoding", "identity");
        }
        if let Auth::Header(value) = &self.auth {
            request = request.header("Authorization", value);
        }
        let response =
            request.call().map_err(|e| HttpError::Transport { what: what.clone(), problem: transport_problem(&e) })?;
        check_status(what, response)
    }

    /// A QIDO-RS search: the rows of its DICOM JSON answer (204 or an
    /// empty body: none).
    ///
    /// # Errors
    /// The server failed (after retries) or answered what is not DICOM JSON.
    pub fn search(&self, path: &str) -> Result<Vec<serde_json::Value>, HttpError> {
        let what = format!("GET {}", path.split('?').next().unwrap_or(path));
        self.retrying(|| {
            let response = self.get(path, "application/dicom+json", &what)?;
            let what = what.clone();
            let mut text = String::new();
            let mut reader = response.into_body().into_with_config().limit(256 << 20).reader();
            reader.read_to_string(&mut text).map_err(|e| HttpError::Transport {
                what: what.clone(),
                problem: format!("reading the answer: {e}"),
            })?;
            if text.trim().is_empty() {
                return Ok(Vec::new());
            }
            serde_json::from_str(&text)
                .map_err(|e| HttpError::Answer { what, problem: format!("not a DICOM JSON array: {e}") })
        })
    }

    /// A WADO-RS retrieve, handing the multipart body to `read` (with the
    /// response's Content-Type); retried as a whole while the failure is
    /// the server's or the network's. Its errors name no UID: they become
    /// error rows, which analysts read.
    ///
    /// # Errors
    /// The server failed (after retries) or `read` refused the answer.
    pub fn retrieve<T>(
        &self,
        path: &str,
        mut read: impl FnMut(&str, &mut dyn Read) -> Result<T, HttpError>,
    ) -> Result<T, HttpError> {
        self.retrying(|| {
            let response = self.get(path, WADO_ACCEPT, "WADO-RS retrieve")?;
            let content_type =
                response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let mut reader = response.into_body().into_with_config().limit(u64::MAX).reader();
            read(&content_type, &mut reader)
        })
    }

    /// A POST (STOW-RS) of `body` with `content_type`: the status and the
    /// answer's text, whatever the status (the caller reads 409's reasons).
    ///
    /// # Errors
    /// No answer came (after retries), or a 5xx after retries.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<(u16, String), HttpError> {
        let what = format!("POST {path}");
        self.retrying(|| {
            let mut request = self
                .agent
                .post(self.url(path))
                .header("Content-Type", content_type)
                .header("Accept", "application/dicom+json");
            if let Auth::Header(value) = &self.auth {
                request = request.header("Authorization", value);
            }
            let response = request
                .send(body)
                .map_err(|e| HttpError::Transport { what: what.clone(), problem: transport_problem(&e) })?;
            let status = response.status().as_u16();
            let mut text = String::new();
            let _ = response.into_body().into_with_config().limit(16 << 20).reader().read_to_string(&mut text);
            if status >= 500 {
                return Err(HttpError::Status { what: what.clone(), status, words: first_words(&text) });
            }
            Ok((status, text))
        })
    }
}

/// Keeps a 2xx response; turns any other status into an error with the
/// server's first words.
fn check_status(
    what: String,
    response: ureq::http::Response<ureq::Body>,
) -> Result<ureq::http::Response<ureq::Body>, HttpError> {
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    let mut text = String::new();
    let _ = response.into_body().into_with_config().limit(64 << 10).reader().read_to_string(&mut text);
    let words = match status {
        401 => format!("not authorised: check the source's username and password or token{}", sep(&text)),
        403 => format!("forbidden: these credentials may not read this{}", sep(&text)),
        _ => first_words(&text),
    };
    Err(HttpError::Status { what, status, words })
}

fn sep(text: &str) -> String {
    let words = first_words(text);
    if words.is_empty() {
        String::new()
    } else {
        format!("; server says: {words}")
    }
}

/// The start of a server's error text, on one line.
pub fn first_words(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(200).collect()
}

/// A transport error in words, without the URL ureq may put in it.
fn transport_problem(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(what) => format!("timed out ({what})"),
        ureq::Error::ConnectionFailed => "connection failed (refused or unreachable)".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::Io(e) => format!("connection error: {e}"),
        other => {
            let text = other.to_string();
            // Our own URLs hold no credential, but keep errors free of them anyway.
            if text.contains("://") {
                "request failed".into()
            } else {
                text
            }
        }
    }
}
