"""Reply texts beside the config are checked at start against the shipped config/messages.zh.toml: a key it has
must be there, and a text may name only the placeholders the handlers fill for it. Before, the two custom files
were only compared with each other, so the same mistake in both started fine and the first subscriber's MO raised
KeyError in its handler, to be retried forever."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import gateway.config
from gateway.config import (
    BUILT_IN,
    DEFAULT_CONFIG,
    ConfigError,
    load_config,
    messages_files,
)
from gateway.templates import Templates

ROOT = Path(__file__).resolve().parents[2]
Edit = Callable[[str], str]


def texts_beside(directory: Path, edit_zh: Edit, edit_en: Edit) -> Path:
    for language, edit in (("zh", edit_zh), ("en", edit_en)):
        text = (BUILT_IN / f"messages.{language}.toml").read_text(encoding="utf-8")
        edited = edit(text)
        assert edited != text, f"the edit changed nothing in messages.{language}.toml"
        (directory / f"messages.{language}.toml").write_text(edited, encoding="utf-8")
    return directory


def typo(old: str, new: str) -> Edit:
    return lambda text: text.replace(old, new)


def without(key: str) -> Edit:
    return lambda text: "".join(line for line in text.splitlines(keepends=True) if not line.startswith(f"{key} = "))


def with_line(section: str, line: str) -> Edit:
    return lambda text: text.replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1)


CASES = [  # (what is wrong, zh edit, en edit, the file named, the key named, a phrase of the problem)
    ("a typo in a common placeholder in both", typo("{operator}", "{operatr}"), typo("{operator}", "{operatr}"),
     "zh", "common.help", "unknown placeholder {operatr}; this text can name "),
    ("a typo in a text's own placeholder in both", typo("{sp_company}", "{sp_compnay}"),
     typo("{sp_company}", "{sp_compnay}"), "zh", "unsubscribe.done", "unknown placeholder {sp_compnay}"),
    ("a placeholder another text has", typo("{sp_company}提供", "{report_id}提供"), lambda t: t + "\n",
     "zh", "unsubscribe.done", "unknown placeholder {report_id}"),
    ("a key deleted from both", without("language_set"), without("language_set"),
     "zh", "common.language_set", "missing (the built-in "),
    ("a key deleted from English only", lambda t: t + "\n", without("language_set"),
     "en", "common.language_set", f"missing (the built-in {BUILT_IN / 'messages.en.toml'} has each)"),
    # A file from an older release lacks every text added since: one start named one (26 starts for 13 keys in
    # two languages), and pointed at the Chinese file for an English text.
    ("several keys deleted", lambda t: t + "\n", lambda t: without("help")(without("language_set")(t)),
     "en", "common.help", "missing and 1 more: common.language_set (the built-in "),
    ("a key added to both", with_line("common", 'extra = "x"'), with_line("common", 'extra = "x"'),
     "zh", "common.extra", "unknown key (not in the built-in "),
    # A placeholder that is not a bare name passed the name checks and failed in the handler at the first MO.
    ("an empty placeholder", typo("中国移动{operator}", "中国移动{}"), lambda t: t + "\n",
     "zh", "common.help", "bad placeholder {}: a placeholder is a name alone"),
    ("a numbered placeholder", lambda t: t + "\n", typo('"{word}"', '"{0}"'), "en", "common.word", "bad placeholder {0}:"),
    ("a conversion", typo("中国移动{operator}", "中国移动{operator!x}"), lambda t: t + "\n",
     "zh", "common.help", "bad placeholder {operator!x}:"),
    ("a format spec", lambda t: t + "\n", typo("{operator}", "{operator:d}"), "en", "common.help", "bad placeholder {operator:d}:"),
]  # fmt: skip


@pytest.mark.parametrize(("zh", "en", "language", "key", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_reply_texts_that_would_fail_a_subscriber_fail_the_start(tmp_path: Path, zh, en, language, key, expected) -> None:
    directory = texts_beside(tmp_path, zh, en)
    with pytest.raises(ConfigError) as raised:
        Templates.load(directory, "zh")
    assert (raised.value.path, raised.value.key) == (str(directory / f"messages.{language}.toml"), key)
    assert expected in raised.value.problem


def test_every_problem_of_both_files_is_named_at_one_start(tmp_path: Path) -> None:
    """An operator's own files from an older release: one start per problem, the English file's only once the
    Chinese one passed, made an upgrade take 21 starts. An unknown English key pointed at the Chinese file."""

    def old_zh(text: str) -> str:
        return with_line("unsubscribe", 'hours = "{n}小时"')(typo("{validity}内回复有效", "{hours}小时内回复有效")(text))

    def old_en(text: str) -> str:
        return with_line("confirmation", 'validity_hours = "{hours} hours"')(without("hours")(text))

    directory = texts_beside(tmp_path, old_zh, old_en)
    with pytest.raises(ConfigError) as raised:
        Templates.load(directory, "zh")
    zh, en = directory / "messages.zh.toml", directory / "messages.en.toml"
    assert (raised.value.path, raised.value.key) == (str(zh), "rating.survey")
    problem = raised.value.problem
    assert problem.startswith("unknown placeholder {hours}") and "; and 3 more: " in problem
    assert f"{zh}: unsubscribe.hours: unknown key (not in the built-in {BUILT_IN / 'messages.zh.toml'})" in problem
    assert f"{en}: common.hours: missing (the built-in {BUILT_IN / 'messages.en.toml'} has each)" in problem
    assert f"{en}: confirmation.validity_hours: unknown key (not in the built-in {BUILT_IN / 'messages.en.toml'})" in problem


def test_every_unknown_placeholder_of_a_text_is_named(tmp_path: Path) -> None:
    directory = texts_beside(tmp_path, lambda t: t + "\n", typo("reply within {window} with the mobile", "reply within {foo} {minutes} {hours} with the mobile"))
    with pytest.raises(ConfigError) as raised:
        Templates.load(directory, "zh")
    assert raised.value.key == "spam.ask_number"
    assert raised.value.problem.startswith("unknown placeholders {foo}, {hours}, {minutes}; this text can name ")


def test_a_text_may_leave_out_a_placeholder_and_name_any_common_one(tmp_path: Path) -> None:
    """Fewer of its own values and more of the configured numbers and keywords: both render."""
    drop_company = typo("您已成功退订{sp_company}提供的", "您已成功退订{operator}的")
    directory = texts_beside(tmp_path, drop_company, lambda t: t + "\n")
    rendered = Templates.load(directory, "zh").render("unsubscribe.done", "zh", sp_company="新浪公司", service="头条新闻")
    assert rendered.startswith("您已成功退订10086的头条新闻业务")


def serve_with_texts_beside(tmp_path: Path, zh, en) -> subprocess.CompletedProcess:
    """`smsgw serve` on the default config with messages.zh.toml / messages.en.toml beside it, edited by zh / en."""
    shutil.copy(DEFAULT_CONFIG, tmp_path / "site.toml")
    texts_beside(tmp_path, zh, en)
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(tmp_path / "site.toml"), "--db", str(tmp_path / "gw.db"),
         "--host", "127.0.0.1", "--smpp-port", "0", "--http-port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_smsgw_serve_refuses_a_placeholder_typo_in_both_languages(tmp_path: Path) -> None:
    result = serve_with_texts_beside(tmp_path, typo("{operator}", "{operatr}"), typo("{operator}", "{operatr}"))
    assert result.returncode == 2
    assert f"smsgw: bad config: {tmp_path / 'messages.zh.toml'}: common.help: unknown placeholder {{operatr}}" in result.stderr
    assert "Traceback" not in result.stderr


def test_smsgw_serve_refuses_an_empty_placeholder_without_a_traceback(tmp_path: Path) -> None:
    """`{}` in common.word ended the start in an IndexError traceback; in common.help the gateway started and the
    first subscriber asking for help got the "cannot handle your message" apology instead."""
    result = serve_with_texts_beside(tmp_path, typo("“{word}”", "“{}”"), lambda t: t + "\n")
    assert result.returncode == 2
    assert result.stderr.startswith(f"smsgw: bad config: {tmp_path / 'messages.zh.toml'}: common.word: bad placeholder {{}}:")
    assert "Traceback" not in result.stderr


def test_an_installed_packages_config_in_the_working_directory_takes_the_built_in_texts_it_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed package (gateway/defaults) takes ./config/default.toml as its default config; with no texts beside
    it, the texts were looked for in ./config too, and the start failed (`config/messages.zh.toml: file not found`)."""
    site = tmp_path / "config"
    site.mkdir()
    shutil.copy(DEFAULT_CONFIG, site / "default.toml")
    (site / "messages.en.toml").write_text((BUILT_IN / "messages.en.toml").read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(gateway.config, "DEFAULT_CONFIG", site / "default.toml")  # as an installed package has it
    files = messages_files(load_config(site / "default.toml"))
    assert files == {"zh": BUILT_IN / "messages.zh.toml", "en": site / "messages.en.toml"}
    assert Templates.load(files, "zh").render("common.help", "zh")
