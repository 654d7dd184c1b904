"""A TLS certificate or key that will not load fails the start naming the file and what it should hold. A
passphrase-protected key: OpenSSL's own prompt hung a gateway started on a terminal (the event loop blocked at "Enter
PEM pass phrase:") and, without one, failed with "[Errno 22] Invalid argument" naming no cause."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import DEFAULT_CONFIG, ConfigError, TlsSettings
from gateway.tls import server_context
from tests.gateway_process import ROOT

NO_KEY = "tls.keyfile", "expected a PEM private key without passphrase, matching the certificate in {cert}: {keyfile} holds "
NO_CERT = "tls.certfile", "expected a PEM certificate (-----BEGIN CERTIFICATE-----): none in {certfile}"


# Each was `tls.certfile: cannot load <cert> with <key>: [SSL] PEM lib (_ssl.c:3926)`, whichever file it was.
@pytest.mark.parametrize(("certfile", "keyfile", "key", "problem"), [
    ("cert", "garbage", NO_KEY[0], NO_KEY[1] + "no private key"),
    ("cert", "empty", NO_KEY[0], NO_KEY[1] + "no private key"),
    ("cert", "cert", NO_KEY[0], NO_KEY[1] + "no private key"),
    ("cert", "other_key", NO_KEY[0], NO_KEY[1] + "the key of another certificate"),
    ("cert", "other_rsa_key", NO_KEY[0], NO_KEY[1] + "the key of another certificate"),
    ("garbage", "key", *NO_CERT),
    ("empty", "key", *NO_CERT),
    ("key", "key", *NO_CERT),
    # (A file that cannot be read: a directory here, EISDIR, as EACCES for a gateway that is not root.)
    ("cert", "directory", "tls.keyfile", "cannot read {keyfile}: Is a directory"),
    ("directory", "key", "tls.certfile", "cannot read {certfile}: Is a directory"),
], ids=["garbage key", "empty key", "the certificate as the key", "an EC key not the certificate's",
        "an RSA key not the certificate's", "garbage certificate", "empty certificate", "the key as the certificate",
        "an unreadable key", "an unreadable certificate"])  # fmt: skip
def test_a_tls_file_that_will_not_load_is_named_with_what_it_should_hold(
    tmp_path: Path, tls_files, certfile: str, keyfile: str, key: str, problem: str
) -> None:
    cert, private_key = tls_files
    files = {"cert": cert, "key": private_key, "garbage": tmp_path / "garbage.pem", "empty": tmp_path / "empty.pem",
             "directory": tmp_path}
    files["garbage"].write_text("garbage\n")
    files["empty"].write_text("")
    algorithm = {"other_key": ["EC", "-pkeyopt", "ec_paramgen_curve:P-256"], "other_rsa_key": ["RSA"]}.get(keyfile)
    if algorithm is not None:  # (a key of its own, not the certificate's: of its type, or of another)
        files[keyfile] = tmp_path / f"{keyfile}.pem"
        subprocess.run(["openssl", "genpkey", "-algorithm", *algorithm, "-out", str(files[keyfile])], check=True,
                       capture_output=True)  # fmt: skip
    tls = TlsSettings(enabled=True, port=0, certfile=str(files[certfile]), keyfile=str(files[keyfile]))
    with pytest.raises(ConfigError) as raised:
        server_context(tls, "site.toml")
    assert raised.value.key == key
    assert raised.value.problem == problem.format(cert=cert, certfile=tls.certfile, keyfile=tls.keyfile)


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
