"""nightscreen's keyed pseudonyms, for scripts that join the analyst tables
with data that carries real identifiers (a programme's reference grades).

pseudonym(key, kind, value) = first 16 bytes of HMAC-SHA256(key, kind + b"\\0" + value),
as hex; kind is one of patient, study, series, instance, file. The key comes
from NIGHTSCREEN_KEY (64 hex digits) or the file named by NIGHTSCREEN_KEY_FILE,
as for `nightscreen run`.
"""

import hashlib
import hmac
import os


def load_key():
    text = os.environ.get("NIGHTSCREEN_KEY")
    if not text:
        path = os.environ.get("NIGHTSCREEN_KEY_FILE")
        if not path:
            raise SystemExit("no key: set NIGHTSCREEN_KEY_FILE (or NIGHTSCREEN_KEY) as for nightscreen run")
        with open(path) as f:
            text = f.read()
    return bytes.fromhex(text.strip())


def pseudonym(key, kind, value):
    if not value:
        return None
    data = value.encode() if isinstance(value, str) else value
    return hmac.new(key, kind.encode() + b"\0" + data, hashlib.sha256).hexdigest()[:32]
