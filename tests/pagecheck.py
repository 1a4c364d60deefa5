"""The structure of a written HTML page, as a reader's browser would find it."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image


@dataclass
class Page:
    tags: dict = field(default_factory=dict)  # tag → count
    headings: list = field(default_factory=list)  # text of h1–h3
    header_cells: list = field(default_factory=list)  # text of <th>
    images: list = field(default_factory=list)  # src of <img>
    anchors: list = field(default_factory=list)  # href="#…" targets
    ids: list = field(default_factory=list)


class _Reader(HTMLParser):
    def __init__(self):
        super().__init__()
        self.page, self.open = Page(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.page.tags[tag] = self.page.tags.get(tag, 0) + 1
        if tag == "img":
            self.page.images.append(attrs["src"])
        if tag == "a" and attrs.get("href", "").startswith("#"):
            self.page.anchors.append(attrs["href"][1:])
        if "id" in attrs:
            self.page.ids.append(attrs["id"])
        if tag in ("h1", "h2", "h3", "th"):
            self.open.append([tag, ""])

    def handle_endtag(self, tag):
        if self.open and self.open[-1][0] == tag:
            _, text = self.open.pop()
            (self.page.header_cells if tag == "th" else self.page.headings).append(text.strip())

    def handle_data(self, data):
        if self.open:
            self.open[-1][1] += data


def read_page(path: Path) -> Page:
    reader = _Reader()
    reader.feed(Path(path).read_text())
    return reader.page


def image_opens(src: str, base: Path) -> bool:
    """An <img> source is an embedded picture or a file beside the page, and it decodes."""
    if src.startswith("data:image/"):
        data = base64.b64decode(src.split(",", 1)[1])
    else:
        path = base / src
        if not path.is_file():
            return False
        data = path.read_bytes()
    Image.open(io.BytesIO(data)).verify()
    return True


def check_page(path: Path) -> Page:
    """What every page must be: real tables, no preformatted Markdown, links and pictures that resolve."""
    page = read_page(path)
    assert page.tags.get("table", 0) >= 1 and "pre" not in page.tags
    assert "|---|" not in Path(path).read_text()
    assert all(image_opens(src, Path(path).parent) for src in page.images)
    assert set(page.anchors) <= set(page.ids)
    return page
