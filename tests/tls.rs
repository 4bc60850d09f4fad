//! DICOMweb over TLS with a hospital's own CA: nginx (Debian's, as a
//! hospital might put in front of its PACS; `make test` installs it)
//! terminates TLS with a certificate signed by a CA made here with
//! openssl, and proxies to a test Orthanc. Orthanc's own TLS is not used:
//! Debian's 1.10.1 resets connections after the handshake.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pacs::Orthanc;
use crate::util;

const NGINX: &str = "/usr/sbin/nginx";

/// nginx serving TLS on a free loopback port in front of an Orthanc, with
/// a certificate for 127.0.0.1 signed by the CA in `ca`.
pub struct TlsProxy {
    child: Option<Child>,
    pub port: u16,
    pub ca: PathBuf,
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// A self-signed CA in `dir`: `{name}.pem` and `{name}.key`.
pub fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let (pem, key, subject) = (format!("{name}.pem"), format!("{name}.key"), format!("/CN={name}"));
    let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-keyout", &key, "-out", &pem, "-subj", &subject];
    args.extend(EC);
    args.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(dir, &args);
    dir.join(pem)
}

/// A server certificate for 127.0.0.1 signed by the CA `ca` (from [`make_ca`]).
fn make_server_cert(dir: &Path, ca: &str) {
    let mut args =
        vec!["req", "-new", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"];
    args.extend(EC);
    openssl(dir, &args);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write ext");
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.pem",
            "-extfile",
            "server.ext",
        ],
    );
}

impl TlsProxy {
    /// A running proxy in front of `orthanc`, or `None` (skipped) when nginx
    /// is not installed and the run is not strict.
    pub fn start(orthanc: &Orthanc) -> Option<Self> {
        if !Path::new(NGINX).exists() {
            assert!(!util::strict(), "nginx is missing (NIGHTSCREEN_STRICT=1): run `make test` (make pacs)");
            eprintln!("skipping: nginx is missing; `make test` installs it (make pacs)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = make_ca(dir.path(), "hospital-ca");
        make_server_cert(dir.path(), "hospital-ca");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let d = dir.path().display();
        // One process, no user switch (it may run as root), everything
        // under the temporary folder, the body streamed through unbuffered.
        let conf = format!(
            "daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;\n\
             events {{}}\n\
             http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;\n\
                 client_max_body_size 0; proxy_buffering off; proxy_request_buffering off;\n\
                 location / {{ proxy_pass http://127.0.0.1:{}; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }} }}\n",
            orthanc.port
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let proxy = Self { child: Some(child), port, ca, dir };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = std::fs::read_to_string(proxy.dir.path().join("error.log")).unwrap_or_default();
            assert!(started.elapsed() < Duration::from_secs(20), "nginx did not start: {log}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(proxy)
    }

    /// The DICOMweb root through the proxy.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/dicom-web", self.port)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
