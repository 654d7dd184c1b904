"""A passphrase-protected TLS key fails the start with the key named: OpenSSL's own prompt hung a gateway started on
a terminal (the event loop blocked at "Enter PEM pass phrase:") and, without one, failed with "[Errno 22] Invalid
argument" naming no cause."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.config import DEFAULT_CONFIG
from tests.gateway_process import ROOT


def test_smsgw_serve_refuses_an_encrypted_tls_key_before_anything_opens(tmp_path: Path, tls_files) -> None:
    cert, key = tls_files
    encrypted = tmp_path / "encrypted.pem"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:secret", "-out", str(encrypted)],
                   check=True, capture_output=True)  # fmt: skip
    config = tmp_path / "site.toml"
    config.write_text(
        DEFAULT_CONFIG.read_text(encoding="utf-8").replace(
            '[tls]\nenabled = false\nport = 2776\ncertfile = ""\nkeyfile = ""\n',
            f'[tls]\nenabled = true\nport = 0\ncertfile = "{cert}"\nkeyfile = "{encrypted}"\n',
        ),
        encoding="utf-8",
    )
    assert f'keyfile = "{encrypted}"' in config.read_text(encoding="utf-8")
    db = tmp_path / "gw.db"
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--db", str(db), "--host", "127.0.0.1",
         "--smpp-port", "0", "--http-port", "0"],
        # No controlling terminal (as under systemd or docker): OpenSSL would otherwise prompt on this one.
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"smsgw: bad config: {config}: tls.keyfile: the key is encrypted (passphrase-protected)")
    assert "pass phrase" not in result.stderr and "Traceback" not in result.stderr
    assert not db.exists(), "the TLS files are checked before the store opens (and before any port listens)"
