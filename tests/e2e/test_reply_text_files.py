"""Each language's reply texts come from its own messages.<language>.toml beside the config, else from the built-in
one: a site that customised only messages.en.toml had it ignored without a word (only messages.zh.toml, the default
language's, was looked for). The start logs which file each language came from. A real `smsgw serve` process and an
smpplib handset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from gateway.config import BUILT_IN, DEFAULT_CONFIG
from tests.smpp_handset import ESME_ROK, Handset, text

A = "8613800000001"
CUSTOM = "ACME Mobile: your messages will now be in English."


def test_a_lone_messages_en_toml_beside_the_config_is_used_and_logged(tmp_path: Path, start_gateway) -> None:
    config = tmp_path / "site.toml"
    shutil.copy(DEFAULT_CONFIG, config)
    english = (BUILT_IN / "messages.en.toml").read_text(encoding="utf-8")
    shipped = 'language_set = "Your messages will now be in English."'
    assert shipped in english
    (tmp_path / "messages.en.toml").write_text(english.replace(shipped, f'language_set = "{CUSTOM}"'), encoding="utf-8")

    gateway = start_gateway(tmp_path / "gw.db", config=config)
    phone = Handset(gateway.smpp_port, A)
    try:
        phone.bind("trx", "handset", address_range=A)
        assert phone.submit("10086", "EN").status == ESME_ROK
        assert text(phone.expect(5.0, lambda pdu: pdu.source_addr == b"10086")) == CUSTOM
    finally:
        phone.close()
        assert gateway.terminate() == 0
    [sources] = [record for line in gateway.log if (record := json.loads(line))["event"] == "reply texts"]
    assert (sources["en"], sources["zh"]) == (str(tmp_path / "messages.en.toml"), str(DEFAULT_CONFIG.parent / "messages.zh.toml"))
