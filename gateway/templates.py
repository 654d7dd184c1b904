"""Reply texts: config/messages.<language>.toml, with named placeholders.

Tables nest: `[unsubscribe] done = "…{sp_name}…"` is the template
`unsubscribe.done`. Every language must have the keys of the shipped
config/messages.zh.toml (the reference), and a text may name only the
placeholders the reference's text of that key names: the handlers fill those
and no others. A gap or an unknown placeholder stops the start with file and
key, instead of a KeyError at the first subscriber's MO.

Every text may also name the configured numbers and keywords ([services]):
`{operator}`, `{query_keyword}`, `{confirm_words}`… (`common_values`), so a
text never tells a subscriber to send a keyword the gateway was configured
not to know, or to call a number it does not have; and `{example_number}`, a
mobile number of the configured number plan ([gateway]) as written at home
(NumberPlan.example), so that an example is one the gateway takes. A text
whose own wording GSM 03.38 can carry (the English ones) names only the
words it can carry too (`Y`, `YES` or `1`; `ZH`): one `是` or `中文` would
send it as UCS2, in 2-3 times the SMS parts. Every configured word is still
accepted; only what a text shows differs.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from .config import BUILT_IN, LANGUAGES, ConfigError, ServiceSettings, read_toml
from .numbers import NumberPlan
from .smpp.text import is_gsm

_FORMATTER = string.Formatter()


class Templates:
    def __init__(
        self, texts: dict[str, dict[str, str]], default_language: str, sources: dict[str, str] | None = None,
        settings: ServiceSettings | None = None, plan: NumberPlan | None = None,
    ) -> None:  # fmt: skip
        if default_language not in texts:
            raise ConfigError((sources or {}).get(default_language, "messages"), "-", f"no texts for default language {default_language!r}")
        self.texts = texts
        self.default_language = default_language
        self._sources = sources or {}
        self._validate()
        settings, plan = settings or ServiceSettings(), plan or NumberPlan()
        every_word = {language: common_values(settings, plan, self._joiner(language)) for language in texts}
        gsm_words = {language: common_values(settings, plan, self._joiner(language), gsm_only) for language in texts}
        # The common values each text naming them is formatted with, decided per text and not per language: a
        # text already UCS2 by its own wording (the Chinese ones) loses nothing by naming every word. Most texts
        # name none of them, and those are formatted with the caller's values alone.
        self._common = {
            (language, key): (gsm_words if is_gsm(_wording(template)) else every_word)[language]
            for language, own in texts.items() for key, template in own.items() if _fields(template) & COMMON
        }  # fmt: skip

    @classmethod
    def load(
        cls, directory: Path | str | Mapping[str, Path], default_language: str, languages: tuple[str, ...] = LANGUAGES,
        settings: ServiceSettings | None = None, plan: NumberPlan | None = None,
    ) -> Templates:  # fmt: skip
        """The texts of a directory's messages.<language>.toml, or of the files given language by language
        (config.messages_files), naming the configured numbers and keywords of `settings` and `plan` (Config.services,
        Config.number_plan(); default: the built-in config's)."""
        if isinstance(directory, Mapping):
            files = dict(directory)
        else:
            files = {language: Path(directory) / f"messages.{language}.toml" for language in languages}
        texts, sources = {}, {}
        for language, path in files.items():
            texts[language] = _flatten(read_toml(path), "", path)
            sources[language] = str(path)
        return cls(texts, default_language, sources, settings, plan)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.texts)

    def render(self, key: str, language: str | None = None, **values: Any) -> str:
        if language not in self.texts:
            language = self.default_language
        template = self.texts[language].get(key)
        if template is None:
            raise KeyError(f"no reply text {key!r}")
        common = self._common.get((language, key))
        if common is not None:
            return template.format(**{**common, **values})
        return template.format(**values)

    def common_values_of(self, key: str, language: str) -> dict[str, str]:
        """The configured numbers and keywords `key`'s text in `language` is rendered with (none if it names none)."""
        return dict(self._common.get((language, key), {}))

    def _joiner(self, language: str):
        """Words as this language lists them: common.word each, common.word_separator between, the last one after
        common.word_last_separator ("“是”、“Y”或“1”")."""
        texts = self.texts[language]

        def join(words: tuple[str, ...]) -> str:
            shown = [texts["common.word"].format(word=w) for w in words]
            if len(shown) == 1:
                return shown[0]
            return texts["common.word_separator"].join(shown[:-1]) + texts["common.word_last_separator"] + shown[-1]

        return join

    def _validate(self) -> None:
        """Every problem of every language's file at once, the first as the error's file and key: an operator's own
        files from an older release need each change made since, and one start per problem made an upgrade take 21."""
        reference_path = BUILT_IN / REFERENCE
        reference = _reference(reference_path)
        problems: list[tuple[str, str, str]] = []  # (file, key, problem)
        for language, texts in self.texts.items():
            source = self._sources.get(language, f"messages.{language}")
            shipped = BUILT_IN / f"messages.{language}.toml"
            shipped = shipped if shipped.exists() else reference_path
            missing = [key for key in reference if key not in texts]
            if missing:
                more = f" and {len(missing) - 1} more: {', '.join(missing[1:])}" if len(missing) > 1 else ""
                problems.append((source, missing[0], f"missing{more} (the built-in {shipped} has each)"))
            for key, template in reference.items():
                allowed = _fields(template) | COMMON  # the common ones: any text, any language
                unknown = _fields(texts.get(key, "")) - allowed
                if unknown:
                    named = ", ".join(f"{{{name}}}" for name in sorted(unknown))
                    problems.append((source, key, f"unknown placeholder{'s' if len(unknown) > 1 else ''} {named}; this text can name "
                                     + ", ".join(f"{{{name}}}" for name in sorted(allowed))
                                     + f" (the built-in {shipped} shows them)"))  # fmt: skip
            problems += [(source, key, f"unknown key (not in the built-in {shipped})") for key in texts if key not in reference]
        if problems:
            (source, key, problem), rest = problems[0], problems[1:]
            if rest:
                problem += f"; and {len(rest)} more: " + "; ".join(f"{s}: {k}: {p}" for s, k, p in rest)
            raise ConfigError(source, key, problem)


def period(render: Callable[..., str], seconds: float) -> str:
    """A period as the texts name it (`render(key, **values)` of one language): whole hours as hours, anything
    else in whole minutes, rounded down (a subscriber told 2 minutes of a 90 s window would reply too late), at
    least 1. What is left of a window counts a moment short of a whole minute as that minute: the 30 minutes a
    prompt gave are not 29 a few milliseconds later."""
    seconds += _MOMENT
    if seconds >= 3600 and seconds % 3600 < 2 * _MOMENT:
        return render("common.hours", n=int(seconds // 3600))
    return render("common.minutes", n=max(1, int(seconds // 60)))


_MOMENT = 1.0  # seconds


REFERENCE = "messages.zh.toml"  # the shipped texts: every key, and the placeholders the code fills for each


@lru_cache(maxsize=4)
def _reference(path: Path) -> dict[str, str]:
    return _flatten(read_toml(path), "", path)


COMMON = frozenset({
    "operator", "spam_report", "rating", "query_keyword", "all_keyword", "english_word", "chinese_word",
    "confirm_words", "decline_words", "example_number",
})  # fmt: skip


def common_values(settings: ServiceSettings, plan: NumberPlan, join, shown=lambda words: words) -> dict[str, str]:
    """The configured numbers and keywords every text may name; of each word list, the `shown(words)` ones."""
    return {
        "operator": settings.operator, "spam_report": settings.spam_report, "rating": settings.rating,
        "query_keyword": settings.query_keyword, "all_keyword": settings.unsubscribe_all_keyword,
        "english_word": shown(settings.english_words)[0], "chinese_word": shown(settings.chinese_words)[0],
        "confirm_words": join(shown(settings.confirm_words)), "decline_words": join(shown(settings.decline_words)),
        "example_number": plan.example(),
    }  # fmt: skip


def gsm_only(words: tuple[str, ...]) -> tuple[str, ...]:
    """The words GSM 03.38 can carry. A list with none of them is shown whole: a text must still name a word to
    send, and costing UCS2 is better than naming none."""
    return tuple(word for word in words if is_gsm(word)) or words


def _check_placeholders(template: str, key: str, path: Path) -> None:
    """Every placeholder a bare name: `{}` or `{0}` (positional), `{name!r}`, `{name:>8}` passed the name checks and
    failed in the handler, at the first subscriber's MO. No conversion or format spec is allowed at all: the values
    come as the handlers pass them, some texts and some numbers by text, and a spec one kind takes fails on the
    other (amounts come formatted already: {fee} is "5.00")."""
    try:
        placeholders = [(field, conversion, spec) for _, field, spec, conversion in _FORMATTER.parse(template)
                        if field is not None]  # fmt: skip
    except ValueError as exc:  # a lone { or }
        raise ConfigError(path, key, f"bad placeholder: {exc} (write {{{{ and }}}} for a brace itself)") from None
    for field, conversion, spec in placeholders:
        if not field.isidentifier() or conversion or spec:
            shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ConfigError(path, key, f"bad placeholder {shown}: a placeholder is a name alone, such as {{operator}} "
                              "(no position, conversion or format spec); write {{ and }} for a brace itself")  # fmt: skip


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in _FORMATTER.parse(template) if name}


def _wording(template: str) -> str:
    """The template's own text, without its placeholders."""
    return "".join(literal for literal, _, _, _ in _FORMATTER.parse(template))


def _flatten(table: dict[str, Any], prefix: str, path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}.", path))
        elif isinstance(value, str):
            _check_placeholders(value, name, path)
            out[name] = value
        else:
            raise ConfigError(path, name, "expected a text (string)")
    return out
