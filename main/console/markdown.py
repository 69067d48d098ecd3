"""Reports rendered from markdown into inert HTML, for the console (CONTRACT §9).

Whatever a report holds came from the model, an alert or a service: it is text. The renderer
is markdown-it-py in CommonMark mode (plus GFM tables: the runtime's own report sections are
tables) with raw HTML *escaped* (`html=False`), images off, and links kept only when they
point at http, https or mailto; any other link (`javascript:`, `data:`, relative) is left as
its literal text. Links that remain open nothing of ours to the target: `rel="noopener
noreferrer nofollow"`. The result is the only `Markup` the console shows without escaping.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from markupsafe import Markup

LINK_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"


def link_allowed(url: str) -> bool:
    """True for an absolute http(s) URL with a host, or a mailto: address."""
    text = url.strip()
    if any(ord(c) < 0x20 or c == "\\" for c in text):
        return False
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme not in LINK_SCHEMES:
        return False
    return scheme == "mailto" or bool(parts.hostname)


def _link_open(
    renderer: RendererHTML,
    tokens: Sequence[Token],
    idx: int,
    options: OptionsDict,
    env: EnvType,
) -> str:
    tokens[idx].attrSet("rel", LINK_REL)
    return renderer.renderToken(tokens, idx, options, env)


@functools.cache
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table").disable("image")
    md.validateLink = link_allowed  # type: ignore[method-assign]  # the documented hook
    md.add_render_rule("link_open", _link_open)
    return md


def render(text: str) -> Markup:
    """`text` as HTML in which nothing from `text` can run."""
    html: Any = _parser().render(text)
    return Markup(html)  # escaped by the renderer itself (html=False)
