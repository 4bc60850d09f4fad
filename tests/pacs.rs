//! A real PACS for the tests: Debian's Orthanc with its DICOMweb plugin
//! (`make test` installs both), started per test in a temporary folder on
//! a free loopback port with authentication on and a random password, and
//! stopped by its process id (SIGKILL: its database is thrown away).
//! Under `NIGHTSCREEN_STRICT=1` a missing Orthanc fails the test.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util;

const ORTHANC: &str = "/usr/sbin/Orthanc";
const DICOMWEB_PLUGIN: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";
pub const USER: &str = "nightscreen";

pub struct Orthanc {
    child: Option<Child>,
    pub port: u16,
    pub password: String,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    socket.local_addr().expect("local addr").port()
}

impl Orthanc {
    /// A running Orthanc, or `None` (skipped) when it is not installed and
    /// the run is not strict.
    pub fn start() -> Option<Self> {
        if !Path::new(ORTHANC).exists() || !Path::new(DICOMWEB_PLUGIN).exists() {
            if util::strict() {
                panic!("Orthanc and its DICOMweb plugin are missing (NIGHTSCREEN_STRICT=1): run `make test`");
            }
            eprintln!("skipping: Orthanc is missing; `make test` installs it (make pacs)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bytes = [0u8; 12];
        getrandom::fill(&mut bytes).expect("random");
        let password = hex::encode(bytes);
        let mut orthanc = Self { child: None, port: free_port(), password, dir };
        orthanc.launch();
        Some(orthanc)
    }

    fn launch(&mut self) {
        let db = self.dir.path().join("db");
        let config = serde_json::json!({
            "Name": "NIGHTSCREEN-TEST",
            "StorageDirectory": db, "IndexDirectory": db,
            "Plugins": [DICOMWEB_PLUGIN],
            "HttpServerEnabled": true, "HttpPort": self.port, "RemoteAccessAllowed": false,
            "AuthenticationEnabled": true, "RegisteredUsers": { USER: self.password },
            "DicomServerEnabled": false,
            "OrthancExplorerEnabled": false, "WebDavEnabled": false,
            "DicomWeb": { "Enable": true, "Root": "/dicom-web/", "Host": format!("127.0.0.1:{}", self.port), "Ssl": false }
        });
        let path = self.dir.path().join("orthanc.json");
        std::fs::write(&path, config.to_string()).expect("write orthanc.json");
        let log = std::fs::File::create(self.dir.path().join("orthanc.log")).expect("log");
        let child = Command::new(ORTHANC)
            .arg(&path)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start Orthanc");
        self.child = Some(child);
        let started = Instant::now();
        while let Err(last) = self.get("/system") {
            assert!(started.elapsed() < Duration::from_secs(20), "Orthanc did not answer ({last}): {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("orthanc.log")).unwrap_or_default()
    }

    /// Stops it by its process id, at once (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and database.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn root(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder().http_status_as_error(false).build().into()
    }

    fn auth(&self) -> String {
        use base64::Engine;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{}", self.password)))
    }

    /// GET `path` (under the root) with our credentials: status and body.
    pub fn get(&self, path: &str) -> Result<(u16, Vec<u8>), String> {
        let response = Self::agent()
            .get(format!("{}{path}", self.root()))
            .header("Authorization", self.auth())
            .call()
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        response
            .into_body()
            .into_with_config()
            .limit(u64::MAX)
            .reader()
            .read_to_end(&mut body)
            .map_err(|e| e.to_string())?;
        if status == 200 {
            Ok((status, body))
        } else {
            Err(format!("HTTP {status}"))
        }
    }

    /// A QIDO-RS search under `/dicom-web/`.
    pub fn search(&self, query: &str) -> Vec<serde_json::Value> {
        let (_, body) = self.get(&format!("/dicom-web/{query}")).expect("QIDO");
        if body.is_empty() {
            return Vec::new();
        }
        serde_json::from_slice(&body).expect("DICOM JSON")
    }

    /// Stores one file through Orthanc's REST API.
    pub fn upload(&self, file: &Path) {
        let bytes = std::fs::read(file).expect("read");
        let response = Self::agent()
            .post(format!("{}/instances", self.root()))
            .header("Authorization", self.auth())
            .header("Content-Type", "application/dicom")
            .send(&bytes[..])
            .expect("upload");
        assert_eq!(response.status().as_u16(), 200, "upload of {}", file.display());
    }

    /// Stores every `.dcm` file under `dir`.
    pub fn upload_all(&self, dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> =
            walk(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "dcm")).collect();
        files.sort();
        for file in &files {
            self.upload(file);
        }
        files
    }

    /// Instances Orthanc holds.
    pub fn count_instances(&self) -> u64 {
        let (_, body) = self.get("/statistics").expect("statistics");
        let stats: serde_json::Value = serde_json::from_slice(&body).expect("json");
        stats["CountInstances"].as_u64().expect("CountInstances")
    }

    /// A `[sources.NAME]` table for this server at `url` (its own root, or
    /// a proxy's), the password in a file in `dir`.
    pub fn source_table(&self, name: &str, dir: &Path, url: &str, extra: &str) -> String {
        let password = dir.join(format!("{name}.password"));
        std::fs::write(&password, format!("{}\n", self.password)).expect("password file");
        format!(
            "\n[sources.{name}]\nkind = \"dicomweb\"\nurl = \"{url}\"\nusername = \"{USER}\"\npassword_file = {:?}\n{extra}\n",
            password.display().to_string()
        )
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
