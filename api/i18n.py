"""Language choice: Vietnamese first, English when the caller prefers it."""

from __future__ import annotations


def prefers_english(accept_language: str | None) -> bool:
    """True when English is ranked above Vietnamese in an Accept-Language header."""
    if not accept_language:
        return False
    best: tuple[float, str] | None = None
    for part in accept_language.split(","):
        lang, _, params = part.strip().partition(";")
        lang = lang.strip().lower()
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        primary = lang.split("-")[0]
        if primary not in ("vi", "en"):
            continue
        if best is None or q > best[0]:
            best = (q, primary)
    return best is not None and best[1] == "en"
