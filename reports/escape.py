"""Escaping for untrusted text in reports.

Model names, method names, metric names and anything else read from a result file are
untrusted: a result directory can be shared, and some of its text may come from model
outputs, which are adversarial. Every report format escapes them through one function here,
so a new format (an HTML report: use `html_escape`) gets the same defence, not a new copy.
"""

from __future__ import annotations

import html
import re

# Markdown: characters that could end a table cell (|), open code, emphasis, links or images
# ([ ] and the ! before them become inert once [ is escaped), HTML tags or autolinks (< >).
# Backslash is escaped first so that an input backslash cannot cancel one of our escapes.
_MD_SPECIAL = re.compile(r"([\\`*_<>\[\]|])")
# Anything that ends a line for a Markdown parser (or for str.splitlines) breaks a table row;
# other control characters have no business in a report either.
# Terminal escapes (ESC, CSI) and bidi overrides become spaces too: they can disguise text.
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# A cell that is a plain number is data, not a formula, even when it starts with - or +.
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
# Spreadsheets evaluate cells that start with these (tab and CR too: OWASP's list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def one_line(text: object) -> str:
    """The text on one line: line breaks and control characters become spaces."""
    return _LINE_BREAKS.sub(" ", str(text))


def markdown_escape(text: object) -> str:
    """Text that renders literally inside a Markdown table cell and cannot break the row.

    Newlines and other control characters become spaces; `\\ | ` * _ < > [ ]` get a
    backslash, so no cell can close the table, start code or emphasis, or inject a link,
    an image or raw HTML.
    """
    return _MD_SPECIAL.sub(r"\\\1", one_line(text))


def csv_safe(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text instead of evaluating as a formula.

    Strings that start with `= + - @` (or tab / CR) and are not a plain number get a leading
    single quote. Non-strings (numbers, None) are returned unchanged so numeric columns stay
    numeric.
    """
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def html_escape(text: object) -> str:
    """Text for HTML content or a quoted attribute (a later HTML report)."""
    return html.escape(str(text), quote=True)
