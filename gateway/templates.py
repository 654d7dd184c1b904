"""Reply texts: config/messages.<language>.toml, with named placeholders.

Tables nest: `[unsubscribe] done = "…{sp_name}…"` is the template
`unsubscribe.done`. Every language must have the same keys with the same
placeholders as the default one; a gap stops the start with file and key.
"""

from __future__ import annotations

import string
import tomllib
from pathlib import Path
from typing import Any

from .config import ConfigError

_FORMATTER = string.Formatter()


class Templates:
    def __init__(self, texts: dict[str, dict[str, str]], default_language: str, sources: dict[str, str] | None = None) -> None:
        if default_language not in texts:
            raise ConfigError((sources or {}).get(default_language, "messages"), "-", f"no texts for default language {default_language!r}")
        self.texts = texts
        self.default_language = default_language
        self._sources = sources or {}
        self._validate()

    @classmethod
    def load(cls, directory: Path | str, default_language: str, languages: tuple[str, ...] = ("zh", "en")) -> Templates:
        texts, sources = {}, {}
        for language in languages:
            path = Path(directory) / f"messages.{language}.toml"
            try:
                with open(path, "rb") as f:
                    texts[language] = _flatten(tomllib.load(f), "", path)
            except FileNotFoundError:
                raise ConfigError(path, "-", "file not found") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(path, "-", f"not valid TOML: {exc}") from None
            sources[language] = str(path)
        return cls(texts, default_language, sources)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.texts)

    def render(self, key: str, language: str | None = None, **values: Any) -> str:
        texts = self.texts.get(language or self.default_language, self.texts[self.default_language])
        template = texts.get(key)
        if template is None:
            raise KeyError(f"no reply text {key!r}")
        return template.format(**values)

    def _validate(self) -> None:
        reference = self.texts[self.default_language]
        for language, texts in self.texts.items():
            source = self._sources.get(language, f"messages.{language}")
            for key, template in reference.items():
                if key not in texts:
                    raise ConfigError(source, key, f"missing (present in messages.{self.default_language})")
                if _fields(texts[key]) != _fields(template):
                    raise ConfigError(source, key, f"placeholders {sorted(_fields(texts[key]))} differ from "
                                      f"messages.{self.default_language}'s {sorted(_fields(template))}")
            for key in texts:
                if key not in reference:
                    raise ConfigError(source, key, f"unknown key (not in messages.{self.default_language})")


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in _FORMATTER.parse(template) if name}


def _flatten(table: dict[str, Any], prefix: str, path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}.", path))
        elif isinstance(value, str):
            try:
                _fields(value)
            except ValueError as exc:
                raise ConfigError(path, name, f"bad placeholder: {exc}") from None
            out[name] = value
        else:
            raise ConfigError(path, name, "expected a text (string)")
    return out
