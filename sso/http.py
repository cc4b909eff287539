"""A framework-free HTTP request and response, so that the provider core never imports a web
framework: ``api/`` translates to and from FastAPI at the edge."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only header mapping."""

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items = {k.lower(): v for k, v in (items or {}).items()}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str, default: Any = None) -> Any:
        return self._items.get(key.lower(), default)


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: Headers
    query: Mapping[str, list[str]] = field(default_factory=dict)
    form: Mapping[str, list[str]] = field(default_factory=dict)

    @property
    def params(self) -> Mapping[str, list[str]]:
        """The request's OAuth parameters: the body for POST, the query string otherwise."""
        return self.form if self.method.upper() == "POST" else self.query


@dataclass
class HttpResponse:
    status: int
    body: Any = ""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def location(self) -> str | None:
        for name, value in self.headers:
            if name.lower() == "location":
                return value
        return None

    @location.setter
    def location(self, value: str) -> None:
        self.headers = [(n, v) for n, v in self.headers if n.lower() != "location"]
        self.headers.append(("Location", value))
