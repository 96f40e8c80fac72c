"""Class rosters: reading an uploaded CSV or XLSX, checking it, and writing CSV for download.

A roster is a spreadsheet with a header row of variable names (or labels) and one person per
row. This module is pure: bytes in, rows out, no models and no database. The batch service
calls it in this order::

    roster = open_roster(data, filename)                # RosterRejected: nothing runs
    mapping = match_columns(roster.columns, variables)  # RosterRejected: nothing runs
    duplicates = DuplicateTracker()
    for row in roster.rows():
        problems = row_problems(row)                    # this row does not run
        ...
        first = duplicates.check(row)                   # "duplicate of row {first}"
        values, errors = coerce_row(map_row(row.cells, mapping), variables)
        values.pop("end_user", None)
        cleaned, more_errors = clean_values(variables, values)

Every file-level problem is found by ``open_roster`` and ``match_columns`` before the first
row is handed out, so a service never creates half a batch and then meets a broken file.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import hashlib
import io
import math
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_ROWS = 10_000
# The longest text a variable accepts (generation.variables.TEXT_MAX_LENGTH), kept here so this
# module imports nothing of the template machinery.
CELL_MAX_LENGTH = 2000
MAX_COLUMNS = 100
# Cells one CSV line may hold (counting quoted delimiters too) before the file is refused
# unsplit: Excel's own column limit, so no spreadsheet's export (trailing empty columns
# included) is refused, and no line becomes a list of millions of cells.
CSV_MAX_CELLS = 16_384
# Excel's own sheet limits: a row number past them only comes from a hand-made file.
EXCEL_MAX_ROWS = 1_048_576
# Cells right of this column are never read, so a forged far-right cell cannot make every row
# of a read-only openpyxl sheet a 16,384-wide list.
XLSX_SCAN_COLUMNS = 256
ZIP_MAX_UNPACKED_BYTES = 100 * 1024 * 1024
ZIP_MAX_RATIO = 100
# Small parts of a real workbook compress far better than 100:1; only big ones are suspect.
ZIP_RATIO_FLOOR_BYTES = 1024 * 1024
SNIFF_SAMPLE_CHARS = 16 * 1024
EXTRA_COLUMNS = ("end_user",)

SAVE_AS = "Save it from your spreadsheet program as 'CSV UTF-8' or as an Excel workbook (.xlsx)."

_FORMULA_STARTS = frozenset("=+-@＝＋－＠")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SEPARATORS = re.compile(r"[\s_\-]+")
_INVISIBLE = dict.fromkeys(map(ord, "\ufeff\u200b\u200c\u200d\u2060"))
_MARKUP = re.compile(r"\s*<(?:!doctype|html|\?xml|table)", re.IGNORECASE)
_SEP_LINE = re.compile(r"sep=(.)\r?\n", re.IGNORECASE)
_MAGIC = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old-format Excel (.xls) or password-protected file"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
)


class RosterRejected(ValueError):
    """A problem with the whole file: no row of it runs.

    ``code`` is one of roster_too_large, roster_format, roster_nul, roster_encoding,
    roster_zip_bomb, roster_unreadable, roster_csv_syntax, roster_empty, roster_no_header,
    roster_too_many_rows, roster_too_many_columns, roster_header, roster_template. ``details``
    holds column lists for roster_header (keys: unknown, missing, duplicate, ambiguous, image,
    expected).
    """

    def __init__(self, code: str, message: str, details: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


@dataclass(frozen=True)
class RosterRow:
    """One non-blank data row; ``number`` is the row number the spreadsheet shows (header = 1)."""

    number: int
    cells: dict[str, str]
    # (1-based column number, value) of non-empty cells in columns that have no header.
    unlabelled: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class Roster:
    """A parsed roster whose file-level checks have all passed; ``rows()`` cannot fail."""

    format: str
    encoding: str | None
    columns: list[str]
    _records: list[tuple[int, tuple[str, ...], tuple[tuple[int, str], ...]]] = field(repr=False)

    @property
    def row_count(self) -> int:
        """Non-blank data rows, the number of jobs the batch would at most create."""
        return len(self._records)

    def rows(self) -> Iterator[RosterRow]:
        columns = self.columns
        for number, values, unlabelled in self._records:
            yield RosterRow(number, dict(zip(columns, values, strict=True)), unlabelled)


def open_roster(
    data: bytes,
    filename: str = "",
    *,
    max_bytes: int | None = None,
    max_rows: int | None = None,
) -> Roster:
    """Parse a CSV or XLSX roster, sniffed by content; raise RosterRejected for the whole file.

    ``filename`` only names the file in messages: an .xlsx that is really a CSV is read as CSV.

    The rows are read here, not lazily, so that a malformed row, a row past the cap or a broken
    workbook part rejects the file before the caller has acted on any row. What is kept is
    bounded by ``max_rows`` times ``MAX_COLUMNS`` cells, and the input by ``max_bytes``.
    """
    if max_bytes is None:
        max_bytes = getattr(settings, "REELCAST_ROSTER_MAX_BYTES", DEFAULT_MAX_BYTES)
    if max_rows is None:
        max_rows = getattr(settings, "REELCAST_ROSTER_MAX_ROWS", DEFAULT_MAX_ROWS)
    if len(data) > max_bytes:
        raise RosterRejected(
            "roster_too_large",
            f"The file is {len(data)} bytes; the limit is {max_bytes} bytes. "
            "Split the roster into smaller files.",
        )
    if not data.strip():
        raise RosterRejected("roster_empty", "The file is empty.")
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _open_xlsx(data, filename, max_rows)
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise RosterRejected(
                "roster_format",
                f"{_the_file(filename)} is {what}, not a CSV or XLSX roster. {SAVE_AS}",
            )
    return _open_csv(data, filename, max_rows)


def match_columns(
    columns: Sequence[str], variables: list[dict], *, extra: Sequence[str] = EXTRA_COLUMNS
) -> dict[str, str]:
    """Map each roster column to a variable name (or an ``extra`` name such as end_user).

    A column matches a variable's name or label, ignoring case, width (NFKC), surrounding and
    repeated spaces, and the difference between '-', '_' and ' '. A name match wins over a
    label match. Unknown columns, columns for image variables, two columns for one variable and
    missing required variables are all reported in one RosterRejected(code="roster_header").
    A template with a required image variable cannot take a roster at all (roster_template).
    """
    image_required = [v["name"] for v in variables if v.get("type") == "image" and _is_required(v)]
    if image_required:
        raise RosterRejected(
            "roster_template",
            "This template needs an image for "
            + ", ".join(image_required)
            + ", which a roster cannot carry; create these videos one at a time instead.",
            {"image": image_required},
        )
    by_name: dict[str, str] = {}
    by_label: dict[str, set[str]] = {}
    for var in variables:
        by_name[_match_key(var["name"])] = var["name"]
        label = var.get("label")
        if isinstance(label, str) and _match_key(label):
            by_label.setdefault(_match_key(label), set()).add(var["name"])
    for name in extra:
        by_name.setdefault(_match_key(name), name)
    kinds = {v["name"]: v.get("type") for v in variables}

    mapping: dict[str, str] = {}
    unknown: list[str] = []
    ambiguous: list[str] = []
    image: list[str] = []
    claimed: dict[str, list[str]] = {}
    for column in columns:
        key = _match_key(column)
        target = by_name.get(key)
        if target is None:
            labelled = by_label.get(key, set())
            if len(labelled) > 1:
                ambiguous.append(column)
                continue
            target = next(iter(labelled), None)
        if target is None:
            unknown.append(column)
        elif kinds.get(target) == "image":
            image.append(column)
        else:
            mapping[column] = target
            claimed.setdefault(target, []).append(column)
    duplicate = [" and ".join(cols) for cols in claimed.values() if len(cols) > 1]
    missing = [
        v["name"]
        for v in variables
        if _is_required(v) and v.get("type") != "image" and v["name"] not in claimed
    ]
    if not (unknown or ambiguous or image or duplicate or missing):
        return mapping

    expected = [_describe_expected(v) for v in variables if v.get("type") != "image"]
    expected += [f"{name} (optional)" for name in extra]
    sentences = []
    if unknown:
        sentences.append(f"Unknown columns: {_quoted(unknown)}.")
    if ambiguous:
        sentences.append(
            f"Columns matching the labels of more than one variable (use the variable name): "
            f"{_quoted(ambiguous)}."
        )
    if image:
        sentences.append(f"Image variables cannot come from a roster: {_quoted(image)}.")
    if duplicate:
        sentences.append(f"Columns for the same variable: {_quoted(duplicate)}.")
    if missing:
        sentences.append(f"Missing required columns: {', '.join(missing)}.")
    sentences.append(f"Expected columns: {', '.join(expected)}.")
    raise RosterRejected(
        "roster_header",
        " ".join(sentences),
        {
            "unknown": unknown,
            "missing": missing,
            "duplicate": duplicate,
            "ambiguous": ambiguous,
            "image": image,
            "expected": expected,
        },
    )


def map_row(cells: Mapping[str, str], mapping: Mapping[str, str]) -> dict[str, str]:
    """A row's cells keyed by variable (or extra) name instead of by column."""
    return {mapping[column]: value for column, value in cells.items() if column in mapping}


def coerce_row(
    cells: Mapping[str, Any], variables: list[dict]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Turn number-variable cells into int or float: (values, errors keyed ``values.<name>``).

    Other cells pass through unchanged, and an empty cell stays "" so that ``clean_values``
    applies the default or reports it as required. Full-width digits are accepted (NFKC);
    thousands separators and decimal commas are not, because "1,5" could mean either.
    """
    values = dict(cells)
    errors: dict[str, str] = {}
    for var in variables:
        name = var["name"]
        raw = values.get(name)
        if var.get("type") != "number" or not isinstance(raw, str):
            continue
        text = unicodedata.normalize("NFKC", raw).strip()
        if not text:
            values[name] = ""
            continue
        number = _parse_number(text)
        if number is None:
            errors[f"values.{name}"] = f"Must be a number (got '{_preview(raw)}')."
            continue
        if var.get("integer") and isinstance(number, float) and number.is_integer():
            number = int(number)
        values[name] = number
    return values, errors


def row_problems(
    row: RosterRow | Mapping[str, str], *, max_length: int = CELL_MAX_LENGTH
) -> list[str]:
    """Reasons a row must not run: formula cells, over-long cells, NULs, unlabelled values.

    A formula cell is one whose first non-space character is = + - @ (or their full-width
    forms), or that starts with a tab or carriage return, unless it is a plain number such as
    "-5" or "+1.5". Such a value would run as a formula when the results are opened in a
    spreadsheet (OWASP "CSV injection"); refusing it beats storing it and escaping it later.
    """
    cells = row.cells if isinstance(row, RosterRow) else row
    problems = []
    for column, value in cells.items():
        if "\x00" in value:
            problems.append(f"cell '{column}' contains a NUL character")
        if looks_like_formula(value):
            problems.append(
                f"cell '{column}' looks like a spreadsheet formula ('{_preview(value)}'); "
                "formulas are not accepted"
            )
        if len(value) > max_length:
            problems.append(
                f"cell '{column}' is {len(value)} characters long; the limit is {max_length}"
            )
    if isinstance(row, RosterRow):
        for position, value in row.unlabelled:
            problems.append(
                f"column {position} has a value ('{_preview(value)}') but no header; "
                "add a header or delete the value"
            )
    return problems


def looks_like_formula(value: str) -> bool:
    """Would a spreadsheet treat this cell as a formula? Plain numbers are not formulas."""
    if not value:
        return False
    if value[0] in "\t\r":
        return True
    text = value.lstrip()
    if not text or text[0] not in _FORMULA_STARTS:
        return False
    return not _PLAIN_NUMBER.fullmatch(unicodedata.normalize("NFKC", text).rstrip())


class DuplicateTracker:
    """Remembers each row by a digest of its normalised cells, never the row itself.

    Cells are compared after NFKC, case folding and trimming, so "Li Wei" and " li wei " are the
    same person. Show it only the rows that would otherwise run, so that a repeat of a rejected
    row is reported for its own problems rather than as a duplicate of a row that never ran.
    """

    def __init__(self) -> None:
        self._first: dict[bytes, int] = {}

    def check(self, row: RosterRow) -> int | None:
        """The number of the earlier row this one repeats, or None (and remember this one)."""
        digest = hashlib.blake2b(digest_size=16)
        for column in sorted(row.cells):
            for part in (column, unicodedata.normalize("NFKC", row.cells[column]).casefold()):
                text = part.strip().encode("utf-8", "surrogatepass")
                digest.update(b"%d:" % len(text) + text)
        first = self._first.setdefault(digest.digest(), row.number)
        return None if first == row.number else first


def csv_safe(value: Any) -> str:
    """A value as text that a spreadsheet will not run as a formula (OWASP CSV injection).

    A value starting with = + - @ (or full-width forms), tab or carriage return, after any
    spaces, gets a leading apostrophe. Plain numbers such as "-5" are left alone: they cannot
    be formulas, and escaping them would turn every negative number into text.
    """
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if looks_like_formula(text) else text


def write_csv(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> bytes:
    """CSV as Excel opens it: UTF-8 with a byte-order mark, CRLF, every cell through csv_safe."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([csv_safe(cell) for cell in header])
    for row in rows:
        writer.writerow([csv_safe(cell) for cell in row])
    return codecs.BOM_UTF8 + out.getvalue().encode("utf-8")


# -- CSV ---------------------------------------------------------------------------------------


def _open_csv(data: bytes, filename: str, max_rows: int) -> Roster:
    text, encoding = _decode(data)
    if "\x00" in text:
        raise _nul_rejection()
    if _MARKUP.match(text):
        # Some school systems export an HTML table or Excel 2003 XML and name it .xls.
        raise RosterRejected(
            "roster_format",
            f"{_the_file(filename)} is a web page or XML document, not a CSV or XLSX roster. "
            + SAVE_AS,
        )
    sep = _SEP_LINE.match(text)
    if sep and sep.group(1) in ",;\t|":
        # Excel's "sep=;" hint line: Excel hides it, so the header is still row 1.
        delimiter = sep.group(1)
        text = text[sep.end() :]
    else:
        delimiter = _sniff_delimiter(text)
    _check_line_widths(text, delimiter)
    # One fixed quoting scheme: the Sniffer also guesses a quote character, and guessing "'"
    # would split names such as O'Brien.
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=delimiter,
        quotechar='"',
        doublequote=True,
        skipinitialspace=False,
        strict=True,
    )
    numbered = _numbered_csv_rows(reader)
    columns, records = _collect(numbered, max_rows)
    return Roster("csv", encoding, columns, records)


def _check_line_widths(text: str, delimiter: str) -> None:
    """Refuse a line with more than CSV_MAX_CELLS delimiters before the csv module splits it:
    20 MB of commas would otherwise become a list of 20 million cells, twice over."""
    for number, line in enumerate(text.split("\n"), start=1):
        cells = line.count(delimiter) + 1
        if cells > CSV_MAX_CELLS:
            raise RosterRejected(
                "roster_too_many_columns",
                f"Line {number} has {cells} cells; a roster has at most {MAX_COLUMNS} columns. "
                f"{SAVE_AS}",
            )


def _numbered_csv_rows(reader: Iterator[list[str]]) -> Iterator[tuple[int, Sequence[str]]]:
    number = 0
    try:
        # One record is one spreadsheet row, even when a quoted cell spans several lines.
        for number, record in enumerate(reader, start=1):
            yield number, record
    except csv.Error as exc:
        raise RosterRejected(
            "roster_csv_syntax",
            f"Row {number + 1} cannot be read as CSV ({exc}); check its quotes. {SAVE_AS}",
        ) from None


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith(codecs.BOM_UTF8):
        return _strict(data, "utf-8-sig"), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _strict(data, "utf-16"), "utf-16"
    if b"\x00" in data:
        raise _nul_rejection()
    try:
        # Multi-byte UTF-8 is so regular that legacy text almost never decodes as it.
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    return _decode_legacy(data)


def _strict(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise RosterRejected(
            "roster_encoding",
            f"The file starts with a {_ENCODING_NAMES[encoding]} byte-order mark but its text is "
            f"not valid {_ENCODING_NAMES[encoding]}. {SAVE_AS}",
        ) from None


# Spreadsheet programs save "CSV" in the ANSI code page of the Windows they run on. The same
# bytes often decode without error in several of these (Shift-JIS names decode as GB18030
# nonsense), so each is decoded strictly and its characters are scored by how typical they are
# of text in that encoding: the common characters of GB2312, Big5 and JIS X 0208 level 1, kana,
# and accented letters inside Latin words. A clear winner is used; a close call is refused,
# because a wrong guess would store every name garbled.
_LEGACY_ENCODINGS = ("gb18030", "cp950", "cp932", "cp1252")
_ENCODING_NAMES = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8",
    "utf-16": "UTF-16",
    "gb18030": "GBK/GB18030 (Simplified Chinese Windows)",
    "cp950": "Big5 (Traditional Chinese Windows)",
    "cp932": "Shift-JIS (Japanese Windows)",
    "cp1252": "Windows-1252 (Western European Windows, Latin-1)",
}
LEGACY_MIN_SCORE = 0.5
LEGACY_MIN_LEAD = 0.25
BIG5_OVER_GBK_LEAD = 0.4
LEGACY_SAMPLE_CHARACTERS = 20_000
_LATIN_PUNCTUATION = frozenset("–—…“”‘’«»°€£·")
_JAPANESE_PUNCTUATION = frozenset("\u3000、。，．・：；？！ー～〜（）「」『』【】々〃")


def _decode_legacy(data: bytes) -> tuple[str, str]:
    decoded: dict[str, tuple[float, str]] = {}
    for encoding in _LEGACY_ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        decoded[encoding] = (_typicality(text, encoding), text)
    gbk, big5 = decoded.get("gb18030"), decoded.get("cp950")
    if gbk and big5 and big5[0] < gbk[0] + BIG5_OVER_GBK_LEAD:
        # GBK and Big5 share their byte ranges and a short list of names cannot tell them
        # apart: GBK, the common case, is read unless Big5 is clearly the better reading.
        del decoded["cp950"]
    ranked = sorted(decoded.items(), key=lambda item: item[1][0], reverse=True)
    if ranked and ranked[0][1][0] >= LEGACY_MIN_SCORE:
        best, (best_score, text) = ranked[0]
        if len(ranked) == 1 or best_score - ranked[1][1][0] >= LEGACY_MIN_LEAD:
            return text, best
        raise RosterRejected(
            "roster_encoding",
            "The file's text is not UTF-8, and it reads almost equally well as "
            f"{_ENCODING_NAMES[best]} and as {_ENCODING_NAMES[ranked[1][0]]}; reading it as the "
            f"wrong one would store every name garbled. {SAVE_AS}",
        )
    raise RosterRejected(
        "roster_encoding",
        "The file's text is not UTF-8, UTF-16, GBK/GB18030, Big5, Shift-JIS or Windows-1252, "
        f"so its characters cannot be read reliably. {SAVE_AS}",
    )


def _typicality(text: str, encoding: str) -> float:
    """The mean weight (0 to 1) of the first non-ASCII characters of ``text`` in ``encoding``."""
    total = 0.0
    count = 0
    weights: dict[str, float] = {}
    for index, ch in enumerate(text):
        if ch < "\x80":
            continue
        if encoding == "cp1252":
            total += _latin_weight(text, index)
        else:
            weight = weights.get(ch)
            if weight is None:
                weight = weights[ch] = _cjk_weight(ch, encoding)
            total += weight
        count += 1
        if count == LEGACY_SAMPLE_CHARACTERS:
            break
    return total / count if count else 0.0


def _cjk_weight(ch: str, encoding: str) -> float:
    if "\ue000" <= ch <= "\uf8ff":  # private use: what undefined codes decode to
        return 0.0
    encoded = ch.encode(encoding)
    if len(encoded) != 2:
        if encoding == "cp932" and "\uff61" <= ch <= "\uff9f":
            return 0.3  # half-width katakana: old systems' furigana, and decoding debris
        return 0.0
    lead, trail = encoded
    if encoding == "gb18030":
        if trail < 0xA1 or lead < 0xA1:
            return 0.4  # GBK's extensions: rarer and traditional characters (喆, 堃)
        if 0xB0 <= lead <= 0xD7 or 0xA1 <= lead <= 0xA3:
            return 1.0  # GB2312 level 1 (the 3,755 common characters), punctuation, full width
        return 0.5 if 0xD8 <= lead <= 0xF7 else 0.3
    if encoding == "cp950":
        if 0xA4 <= lead <= 0xC5 or (lead == 0xC6 and trail <= 0x7E) or 0xA1 <= lead <= 0xA3:
            return 1.0  # Big5's 5,401 common characters, punctuation, full width
        return 0.5 if 0xC9 <= lead <= 0xF9 else 0.0
    # cp932
    if "\u3041" <= ch <= "\u30ff" or lead == 0x82 or ch in _JAPANESE_PUNCTUATION:
        return 1.0  # kana, full-width letters and digits, the punctuation names carry
    if lead == 0x81:
        return 0.3  # other symbols
    if 0x88 <= lead <= 0x98 and (lead, trail) <= (0x98, 0x72):
        return 1.0  # JIS X 0208 level 1 kanji
    if 0x98 <= lead <= 0x9F or 0xE0 <= lead <= 0xEA:
        return 0.5  # level 2 kanji
    return 0.1


def _latin_weight(text: str, index: int) -> float:
    ch = text[index]
    before = text[index - 1] if index else ""
    after = text[index + 1] if index + 1 < len(text) else ""
    beside_latin = (before.isascii() and before.isalpha()) or (after.isascii() and after.isalpha())
    if ch.isalpha():
        return 1.0 if beside_latin else 0.3  # "José", "Zoë"; not "ÍõÐ¡Ã÷"
    if ch in "‘’" and before.isascii() and before.isalpha() and after.isascii():
        return 1.0  # O’Brien, as spreadsheets autocorrect it
    return 0.3 if ch in _LATIN_PUNCTUATION else 0.0


def _nul_rejection() -> RosterRejected:
    return RosterRejected(
        "roster_nul",
        "The file contains NUL bytes, so it is not a text CSV (it may be a binary file, or "
        f"UTF-16 without a byte-order mark). {SAVE_AS}",
    )


def _sniff_delimiter(text: str) -> str:
    """The delimiter (comma, semicolon or tab) that reads the sample as the most regular table.

    Each candidate parses the sample with the one quoting scheme the roster is read with; the
    winner gives every row the header's width most often, then the widest header. Not
    csv.Sniffer: its regular expressions backtrack over quoted text (1.5 s of CPU on a hostile
    16 KB sample, paid again by every chunk) and they read a comma file whose notes say
    ``"Matilda"; "Holes"`` as semicolon-separated.
    """
    sample = text[:SNIFF_SAMPLE_CHARS]
    if len(text) > SNIFF_SAMPLE_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    best, best_score = ",", (0.0, 0)
    for delimiter in ",;\t":
        if delimiter not in sample:
            continue
        reader = csv.reader(
            io.StringIO(sample, newline=""), delimiter=delimiter, quotechar='"', doublequote=True
        )
        try:
            rows = [row for row in reader if any(cell.strip() for cell in row)]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        regular = sum(len(row) == width for row in rows) / len(rows)
        if (regular, width) > best_score:
            best, best_score = delimiter, (regular, width)
    return best


# -- XLSX --------------------------------------------------------------------------------------


def _open_xlsx(data: bytes, filename: str, max_rows: int) -> Roster:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise RosterRejected(
            "roster_unreadable", f"The file looks like a damaged zip or XLSX file. {SAVE_AS}"
        ) from None
    # Declared sizes are binding: zipfile stops inflating an entry at its declared size.
    if sum(entry.file_size for entry in entries) > ZIP_MAX_UNPACKED_BYTES:
        raise RosterRejected(
            "roster_zip_bomb",
            f"The workbook would unpack to more than {ZIP_MAX_UNPACKED_BYTES // 2**20} MB, "
            "far more than any roster needs.",
        )
    for entry in entries:
        if entry.file_size > ZIP_RATIO_FLOOR_BYTES and entry.file_size > ZIP_MAX_RATIO * max(
            entry.compress_size, 1
        ):
            raise RosterRejected(
                "roster_zip_bomb",
                f"A part of the workbook is compressed more than {ZIP_MAX_RATIO} to 1, which "
                "real spreadsheets never are.",
            )
    if "xl/workbook.xml" not in {entry.filename for entry in entries}:
        raise RosterRejected(
            "roster_format",
            f"{_the_file(filename)} is a zip archive but not an Excel workbook (it may be an "
            f"OpenDocument or Numbers file). {SAVE_AS}",
        )
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        _check_sheet_extent(archive, max_rows)
    columns, records = _read_xlsx(data, max_rows)
    return Roster("xlsx", None, columns, records)


_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\b[^>]*?\bref=[\"']([A-Za-z0-9:$]{1,32})[\"']")
_ROW_NUMBER = re.compile(rb"<(?:\w+:)?row\b[^>]*?\br=[\"'](\d{1,12})[\"']")
_CELL_REF = re.compile(r"\$?([A-Za-z]{1,3})\$?(\d{1,7})")
_SHEET_CHUNK_BYTES = 1 << 20


def _check_sheet_extent(archive: zipfile.ZipFile, max_rows: int) -> None:
    """Refuse a first worksheet that declares or reaches past the roster's limits, before
    openpyxl reads it: openpyxl yields every row up to the last one, so a 1 KB file with one
    cell in row 1,048,576 costs seconds of CPU. Both the declared ``<dimension>`` and every
    ``<row r="…">`` are checked, in one pass over the part in 1 MB chunks."""
    part = _first_sheet_part(archive)
    if part is None:
        return  # openpyxl reports the damage
    last_row_allowed = max_rows + 1  # the header
    tail = b""
    with archive.open(part) as sheet:
        while chunk := sheet.read(_SHEET_CHUNK_BYTES):
            window = tail + chunk
            dimension = _DIMENSION.search(window)
            if dimension is not None:
                _check_dimension(dimension.group(1).decode("ascii"), max_rows)
            for found in _ROW_NUMBER.finditer(window):
                if int(found.group(1)) > last_row_allowed:
                    raise RosterRejected(
                        "roster_too_many_rows",
                        f"The worksheet has a row numbered {int(found.group(1))}; a roster has "
                        f"at most {max_rows} rows below its header. Delete the rows below the "
                        "roster, or split it into smaller files.",
                    )
            tail = window[-256:]  # an element cut in two at the chunk's end


def _check_dimension(ref: str, max_rows: int) -> None:
    cells = [_CELL_REF.fullmatch(part) for part in ref.split(":")]
    if not cells or None in cells:
        return  # a dimension openpyxl ignores (reset_dimensions) is no cost
    last_row = max(int(cell.group(2)) for cell in cells if cell)
    last_column = max(_column_number(cell.group(1)) for cell in cells if cell)
    if last_row > max_rows + 1:
        raise RosterRejected(
            "roster_too_many_rows",
            f"The worksheet says it spans {ref}, {last_row} rows; a roster has at most "
            f"{max_rows} rows below its header. Delete the rows below the roster, or split it "
            "into smaller files.",
        )
    if last_column > XLSX_SCAN_COLUMNS:
        raise RosterRejected(
            "roster_too_many_columns",
            f"The worksheet says it spans {ref}, {last_column} columns; a roster has at most "
            f"{MAX_COLUMNS}. Delete the columns right of the roster.",
        )


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters.upper():
        number = number * 26 + ord(letter) - 64
    return number


def _first_sheet_part(archive: zipfile.ZipFile) -> str | None:
    """The zip path of the workbook's first worksheet, the one openpyxl's ``worksheets[0]``
    reads: the first <sheet> of xl/workbook.xml, through xl/_rels/workbook.xml.rels."""
    from defusedxml import ElementTree

    relationship = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
    try:
        workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
        first = next((e for e in workbook.iter() if e.tag.rsplit("}", 1)[-1] == "sheet"), None)
        rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    except Exception:  # damaged or hostile XML: openpyxl refuses it with its own message
        return None
    if first is None:
        return None
    for rel in rels.iter():
        if rel.get("Id") == first.get(relationship) and rel.get("Target"):
            target = rel.get("Target").lstrip("/")
            path = target if target.startswith("xl/") else "xl/" + target
            return path if path in archive.namelist() else None
    return None


def _read_xlsx(data: bytes, max_rows: int) -> tuple[list[str], list]:
    from openpyxl import load_workbook

    workbook = None
    try:
        # defusedxml is installed, so openpyxl refuses XML entity declarations.
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
        if not workbook.worksheets:
            raise RosterRejected("roster_empty", "The workbook has no worksheet.")
        sheet = workbook.worksheets[0]
        # A wrong <dimension> would otherwise cut rows short or start them late.
        sheet.reset_dimensions()
        rows = sheet.iter_rows(min_row=1, min_col=1, max_col=XLSX_SCAN_COLUMNS, values_only=True)
        return _collect(_numbered_xlsx_rows(rows), max_rows)
    except RosterRejected:
        raise
    except Exception:
        # openpyxl raises anything from KeyError to defusedxml's EntitiesForbidden on a
        # damaged or hostile part; to the uploader they are all the same problem.
        raise RosterRejected(
            "roster_unreadable", f"The workbook is damaged or cannot be read. {SAVE_AS}"
        ) from None
    finally:
        if workbook is not None:
            workbook.close()


def _numbered_xlsx_rows(rows: Iterable[tuple]) -> Iterator[tuple[int, list[str]]]:
    # openpyxl fills in rows missing from the XML, so position is the row number. Every row
    # comes XLSX_SCAN_COLUMNS wide; only the header's width is converted unless a cell to its
    # right holds something (tuple.count runs in C, a comprehension over 256 Nones does not).
    width = None
    for number, values in enumerate(rows, start=1):
        if number > EXCEL_MAX_ROWS:
            raise RosterRejected(
                "roster_unreadable", f"The worksheet has more than {EXCEL_MAX_ROWS} rows."
            )
        rest = values[width:] if width is not None else ()
        if width is None or rest.count(None) < len(rest):
            cells = [_xlsx_text(value) for value in values]
            while cells and not cells[-1]:
                cells.pop()
        else:
            cells = [v if type(v) is str else _xlsx_text(v) for v in values[:width]]
        if width is None:
            width = len(cells)
        yield number, cells


def _xlsx_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        # Excel shows 15 significant digits, so 0.1+0.2 is "0.3" there and here.
        return format(value, ".15g") if math.isfinite(value) else repr(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None and value.time() == datetime.time(0):
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    text = getattr(value, "text", None)  # ArrayFormula: "={...}"
    if isinstance(text, str):
        return text if text.startswith("=") else "=" + text
    if type(value).__name__ == "DataTableFormula":
        return "=TABLE()"
    return str(value)


# -- shared ------------------------------------------------------------------------------------


def _collect(
    numbered: Iterator[tuple[int, Sequence[str]]], max_rows: int
) -> tuple[list[str], list[tuple[int, tuple[str, ...], tuple[tuple[int, str], ...]]]]:
    first = next(numbered, None)
    if first is None:
        raise RosterRejected("roster_empty", "The file is empty.")
    _, header = first
    if _is_blank(header):
        if any(not _is_blank(cells) for _, cells in numbered):
            raise RosterRejected(
                "roster_no_header", "Row 1 must be the header (the column names); it is empty."
            )
        raise RosterRejected("roster_empty", "The file has no data.")

    positions: list[int] = []
    columns: list[str] = []
    for position, cell in enumerate(header):
        name = _column_name(cell)
        if name:
            positions.append(position)
            columns.append(name)
    if len(columns) > MAX_COLUMNS:
        raise RosterRejected(
            "roster_header", f"The header has {len(columns)} columns; the limit is {MAX_COLUMNS}."
        )
    seen: dict[str, str] = {}
    duplicate: list[str] = []
    for name in columns:
        key = _match_key(name)
        if key in seen:
            duplicate.append(f"{seen[key]} and {name}")
        seen.setdefault(key, name)
    if duplicate:
        raise RosterRejected(
            "roster_header",
            f"Columns appear twice in the header: {_quoted(duplicate)}.",
            {"duplicate": duplicate},
        )

    labelled = frozenset(positions)
    records = []
    for number, cells in numbered:
        if _is_blank(cells):
            continue
        if len(records) == max_rows:
            raise RosterRejected(
                "roster_too_many_rows",
                f"The roster has more than {max_rows} rows; split it into files of at most "
                f"{max_rows} rows.",
            )
        width = len(cells)
        values = tuple(cells[p] if p < width else "" for p in positions)
        unlabelled = tuple(
            (p + 1, cell)
            for p, cell in enumerate(cells)
            if p not in labelled and cell and not cell.isspace()
        )
        records.append((number, values, unlabelled))
    if not records:
        raise RosterRejected("roster_empty", "The roster has a header but no rows.")
    return columns, records


def _is_blank(cells: Sequence[str]) -> bool:
    return all(not cell or cell.isspace() for cell in cells)


def _column_name(cell: str) -> str:
    text = unicodedata.normalize("NFKC", cell).translate(_INVISIBLE)
    return " ".join(text.split())


def _match_key(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).casefold()
    return _SEPARATORS.sub(" ", text).strip()


def _is_required(var: dict) -> bool:
    return bool(var.get("required", True)) and "default" not in var


def _describe_expected(var: dict) -> str:
    label = var.get("label")
    described = var["name"]
    if isinstance(label, str) and label and _match_key(label) != _match_key(var["name"]):
        described += f" ({label})"
    return described if _is_required(var) else described + " (optional)"


def _parse_number(text: str) -> int | float | None:
    if not _PLAIN_NUMBER.fullmatch(text):
        return None
    try:
        if "." in text or "e" in text or "E" in text:
            number = float(text)
            return number if math.isfinite(number) else None
        return int(text)
    except ValueError:  # more digits than int() will convert
        return None


def _preview(value: str, limit: int = 12) -> str:
    shown = "".join(
        repr(ch)[1:-1] if unicodedata.category(ch) == "Cc" else ch for ch in value[:limit]
    )
    return shown + "…" if len(value) > limit else shown


def _the_file(filename: str) -> str:
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = _column_name("".join(ch for ch in base if unicodedata.category(ch) != "Cc"))[:100]
    return f"'{name}'" if name else "The file"


def _quoted(items: Iterable[str]) -> str:
    return ", ".join(f"'{item}'" for item in items)
