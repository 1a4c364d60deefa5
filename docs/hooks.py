"""MkDocs hook: inside the code spans of table rows, `\\|` (GitHub's way to keep a pipe in a code span
in a table cell) becomes `|`, which Python-Markdown's tables already keep inside code spans."""
import re


def _unescape_code(row):
    return re.sub(r"`[^`]*`", lambda code: code.group(0).replace("\\|", "|"), row.group(0))


def on_page_markdown(markdown, **_):
    return re.sub(r"^\|.*$", _unescape_code, markdown, flags=re.M)
