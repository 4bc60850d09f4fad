"""The DICOMweb leg of `make bench`: a local Orthanc (Debian's package, as
the tests use it) holding the bench batch, and nightscreen reading it over
loopback with QIDO-RS + WADO-RS, against the same batch read from its folder.
Stdlib only. The ratio is each side's fastest of `rounds` alternating runs,
wall time of the whole process (planning included)."""

import base64
import json
import os
import secrets
import socket
import subprocess
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ORTHANC = "/usr/sbin/Orthanc"
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER = "nightscreen"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    def __init__(self, workdir):
        self.dir = Path(tempfile.mkdtemp(prefix="orthanc-", dir=workdir))
        self.port = free_port()
        self.password = secrets.token_hex(12)
        db = str(self.dir / "db")
        config = {
            "Name": "NIGHTSCREEN-BENCH", "StorageDirectory": db, "IndexDirectory": db, "Plugins": [PLUGIN],
            "HttpServerEnabled": True, "HttpPort": self.port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True, "RegisteredUsers": {USER: self.password}, "DicomServerEnabled": False,
            "OrthancExplorerEnabled": False, "WebDavEnabled": False,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{self.port}", "Ssl": False},
        }
        (self.dir / "orthanc.json").write_text(json.dumps(config))
        log = open(self.dir / "orthanc.log", "wb")
        self.proc = subprocess.Popen([ORTHANC, str(self.dir / "orthanc.json")], stdout=log, stderr=log)
        self.auth = "Basic " + base64.b64encode(f"{USER}:{self.password}".encode()).decode()
        started = time.time()
        while True:
            try:
                self.request("GET", "/system")
                break
            except OSError:
                if time.time() - started > 20:
                    raise SystemExit("bench: Orthanc did not start; see " + str(self.dir / "orthanc.log"))
                time.sleep(0.05)

    def request(self, method, path, data=None, content_type=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        req.add_header("Authorization", self.auth)
        if content_type:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read()

    def upload(self, files):
        def one(path):
            self.request("POST", "/instances", Path(path).read_bytes(), "application/dicom")
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, files))

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def config_with_source(base_config, orthanc, workdir):
    text = Path(base_config).read_text()
    models = Path(base_config).resolve().parent.parent / "models"
    text = text.replace('models_dir = "../models"', f'models_dir = "{models}"')
    password = Path(workdir) / "bench.password"
    password.write_text(orthanc.password + "\n")
    text += (f'\n[sources.bench]\nkind = "dicomweb"\nurl = "http://127.0.0.1:{orthanc.port}/dicom-web"\n'
             f'username = "{USER}"\npassword_file = "{password}"\nmodalities = ["OP"]\n')
    path = Path(workdir) / "bench-dicomweb.toml"
    path.write_text(text)
    return path


def run(batch, workdir, config, rounds, run_nightscreen, log):
    """Folder and DICOMweb runs of `batch`, alternating; returns the record."""
    if not (os.path.exists(ORTHANC) and os.path.exists(PLUGIN)):
        raise SystemExit("bench: Orthanc is missing: `make pacs` installs it")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    orthanc = Orthanc(workdir)
    try:
        files = sorted(str(p) for p in Path(batch).rglob("*.dcm"))
        started = time.time()
        orthanc.upload(files)
        log(f"uploaded {len(files)} instances to Orthanc in {time.time() - started:.1f} s")
        cfg = config_with_source(config, orthanc, workdir)
        folder, web = [], []
        for r in range(rounds):
            folder.append(run_nightscreen(str(batch), workdir / "folder", cfg))
            web.append(run_nightscreen("dicomweb:bench?StudyDate=19000101-20991231", workdir / "dicomweb", cfg))
            log(f"dicomweb round {r + 1}/{rounds}: folder {folder[-1]['images_per_second']:.1f}, "
                f"dicomweb {web[-1]['images_per_second']:.1f} images/s")
    finally:
        orthanc.stop()
    best_folder = max(folder, key=lambda x: x["images_per_second"])
    best_web = max(web, key=lambda x: x["images_per_second"])
    return {"folder_runs": folder, "dicomweb_runs": web, "folder": best_folder, "dicomweb": best_web,
            "ratio": best_web["images_per_second"] / best_folder["images_per_second"], "instances": len(files)}
