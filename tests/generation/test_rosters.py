"""Rosters: reading CSV and XLSX uploads, checking headers and rows, and writing safe CSV."""

from __future__ import annotations

import csv
import datetime
import io
import random
import zipfile

import pytest
from openpyxl import Workbook

from generation.rosters import (
    DuplicateTracker,
    RosterRejected,
    RosterRow,
    coerce_row,
    csv_safe,
    map_row,
    match_columns,
    open_roster,
    row_problems,
    write_csv,
)
from generation.variables import clean_values

VARIABLES = [
    {"name": "name", "type": "text", "label": "Student Name"},
    {"name": "age", "type": "number", "integer": True, "required": False},
    {"name": "house", "type": "choice", "choices": ["red", "blue"], "default": "red"},
]
CHINESE_VARIABLES = [
    {"name": "name", "type": "text", "label": "学生姓名"},
    {"name": "age", "type": "number", "label": "年龄", "integer": True},
]


def rows_of(roster) -> list[tuple[int, dict[str, str]]]:
    return [(row.number, row.cells) for row in roster.rows()]


def rejection(data: bytes, filename: str = "", **kwargs) -> RosterRejected:
    with pytest.raises(RosterRejected) as caught:
        open_roster(data, filename, **kwargs)
    return caught.value


def xlsx_bytes(rows: list[list], *, write_only: bool = False) -> bytes:
    workbook = Workbook(write_only=write_only)
    sheet = workbook.create_sheet() if write_only else workbook.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


# -- encodings and dialects ---------------------------------------------------------------------


def test_it_reads_a_utf8_csv():
    data = "name,age\nZoë,12\nJosé,11\n".encode()

    roster = open_roster(data, "class.csv")

    assert (roster.format, roster.encoding, roster.columns) == ("csv", "utf-8", ["name", "age"])
    assert rows_of(roster) == [
        (2, {"name": "Zoë", "age": "12"}),
        (3, {"name": "José", "age": "11"}),
    ]
    assert roster.row_count == 2


def test_it_reads_a_utf8_csv_with_a_byte_order_mark():
    data = "\ufeffname,age\r\nZoë,12\r\n".encode()

    roster = open_roster(data)

    assert (roster.encoding, roster.columns) == ("utf-8-sig", ["name", "age"])
    assert rows_of(roster) == [(2, {"name": "Zoë", "age": "12"})]


def test_it_reads_a_gbk_csv_of_chinese_names_exactly():
    data = "学生姓名,年龄\r\n张伟,12\r\n欧阳震华,11\r\n李娜,13\r\n".encode("gbk")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")

    roster = open_roster(data, "班级.csv")
    mapping = match_columns(roster.columns, CHINESE_VARIABLES)

    assert (roster.encoding, roster.columns) == ("gb18030", ["学生姓名", "年龄"])
    assert mapping == {"学生姓名": "name", "年龄": "age"}
    assert [map_row(row.cells, mapping) for row in roster.rows()] == [
        {"name": "张伟", "age": "12"},
        {"name": "欧阳震华", "age": "11"},
        {"name": "李娜", "age": "13"},
    ]


def test_it_reads_utf16_text_with_a_byte_order_mark():
    # Excel's "Unicode Text": UTF-16 LE with a BOM, tab-separated.
    data = "name\tage\r\n王芳\t12\r\n".encode("utf-16")
    assert data[:2] == b"\xff\xfe"

    roster = open_roster(data, "class.txt")

    assert (roster.encoding, roster.columns) == ("utf-16", ["name", "age"])
    assert rows_of(roster) == [(2, {"name": "王芳", "age": "12"})]


def test_it_reads_a_semicolon_separated_csv():
    data = b"name;age;house\nAnn, the elder;12;blue\nBo;11;red\n"

    roster = open_roster(data)

    assert roster.columns == ["name", "age", "house"]
    assert rows_of(roster) == [
        (2, {"name": "Ann, the elder", "age": "12", "house": "blue"}),
        (3, {"name": "Bo", "age": "11", "house": "red"}),
    ]


def test_it_follows_excels_sep_line_and_keeps_the_header_as_row_1():
    data = b"sep=;\r\nname;age\r\nAnn;12\r\n"

    roster = open_roster(data)

    assert roster.columns == ["name", "age"]
    assert rows_of(roster) == [(2, {"name": "Ann", "age": "12"})]


def test_it_keeps_newlines_and_commas_inside_quoted_cells_and_counts_records_as_rows():
    data = b'name,greeting\r\nAnn,"Hello,\r\nworld"\r\nBo,"Say ""hi"""\r\n'

    roster = open_roster(data)

    assert rows_of(roster) == [
        (2, {"name": "Ann", "greeting": "Hello,\r\nworld"}),
        (3, {"name": "Bo", "greeting": 'Say "hi"'}),
    ]


def test_it_skips_blank_rows_but_keeps_counting_them():
    data = b"name,age\nAnn,12\n\n , \nBo,11\n,\n"

    roster = open_roster(data)

    assert rows_of(roster) == [(2, {"name": "Ann", "age": "12"}), (5, {"name": "Bo", "age": "11"})]


def test_it_fills_short_rows_and_reports_values_without_a_header():
    data = b"name,,age\nAnn\nBo,stray,11,more\n"

    rows = list(open_roster(data).rows())

    assert rows == [
        RosterRow(2, {"name": "Ann", "age": ""}),
        RosterRow(3, {"name": "Bo", "age": "11"}, ((2, "stray"), (4, "more"))),
    ]
    assert row_problems(rows[1]) == [
        "column 2 has a value ('stray') but no header; add a header or delete the value",
        "column 4 has a value ('more') but no header; add a header or delete the value",
    ]


# -- file-level rejections ----------------------------------------------------------------------


def test_it_rejects_an_old_binary_xls_file():
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)

    rejected = rejection(data, "uploads/class.xls")

    assert rejected.code == "roster_format"
    assert str(rejected) == (
        "'class.xls' is an old-format Excel (.xls) or password-protected file, not a CSV or "
        "XLSX roster. Save it from your spreadsheet program as 'CSV UTF-8' or as an Excel "
        "workbook (.xlsx)."
    )


def test_it_rejects_png_bytes_even_when_named_csv():
    data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"

    rejected = rejection(data, "class.csv")

    assert rejected.code == "roster_format"
    assert str(rejected).startswith("'class.csv' is a PNG image, not a CSV or XLSX roster.")


def test_it_rejects_random_bytes():
    data = random.Random(7).randbytes(4096)
    assert b"\x00" in data

    assert rejection(data).code == "roster_nul"


def test_it_rejects_nul_bytes_in_a_csv():
    rejected = rejection(b"name,age\nAnn\x00,12\n")

    assert rejected.code == "roster_nul"
    assert str(rejected).startswith("The file contains NUL bytes, so it is not a text CSV")


def test_it_rejects_text_that_reads_as_none_of_the_spreadsheet_encodings():
    rejected = rejection(b"name,age\nAnn\x81\x8d,12\n")

    assert rejected.code == "roster_encoding"
    assert str(rejected).startswith(
        "The file's text is not UTF-8, UTF-16, GBK/GB18030, Big5, Shift-JIS or Windows-1252"
    )


def test_it_rejects_a_web_page_named_xls():
    rejected = rejection(b"<html><table><tr><td>name</td></tr></table></html>", "export.xls")

    assert rejected.code == "roster_format"
    assert str(rejected).startswith("'export.xls' is a web page or XML document")


def test_it_rejects_a_zip_that_is_not_a_workbook():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("content.xml", "<office:document/>")

    assert rejection(out.getvalue(), "class.ods").code == "roster_format"


def test_it_rejects_a_damaged_zip():
    assert rejection(b"PK\x03\x04 not really a zip").code == "roster_unreadable"


def test_it_rejects_a_file_over_the_byte_cap():
    data = b"name\nAnn\n"

    rejected = rejection(data, max_bytes=8)

    assert rejected.code == "roster_too_large"
    assert str(rejected) == (
        "The file is 9 bytes; the limit is 8 bytes. Split the roster into smaller files."
    )
    assert open_roster(data, max_bytes=9).row_count == 1


def test_it_takes_the_byte_cap_from_settings(settings):
    settings.REELCAST_ROSTER_MAX_BYTES = 8

    assert rejection(b"name\nAnn\n").code == "roster_too_large"


def test_it_rejects_a_zip_bomb_by_its_unpacked_size_before_openpyxl_reads_it():
    out = io.BytesIO()
    zeros = bytes(1 << 20)
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("xl/workbook.xml", "w", force_zip64=True) as entry,
    ):
        for _ in range(200):
            entry.write(zeros)
    data = out.getvalue()
    assert len(data) < 2 * 1024 * 1024

    rejected = rejection(data, "class.xlsx")

    assert rejected.code == "roster_zip_bomb"
    assert str(rejected) == (
        "The workbook would unpack to more than 100 MB, far more than any roster needs."
    )


def test_it_rejects_a_zip_bomb_by_its_compression_ratio():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", b"<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", bytes(4 * 1024 * 1024))

    rejected = rejection(out.getvalue(), "class.xlsx")

    assert rejected.code == "roster_zip_bomb"
    assert str(rejected) == (
        "A part of the workbook is compressed more than 100 to 1, which real spreadsheets "
        "never are."
    )


def test_it_rejects_xml_entity_expansion_in_a_workbook():
    source = zipfile.ZipFile(io.BytesIO(xlsx_bytes([["name"], ["Ann"]])))
    out = io.BytesIO()
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    )
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                assert b"<t>Ann</t>" in content
                content = laughs.encode() + content.replace(b"<t>Ann</t>", b"<t>&lol2;</t>")
            archive.writestr(item, content)

    assert rejection(out.getvalue()).code == "roster_unreadable"


def test_it_rejects_an_empty_file_and_a_header_without_rows():
    assert str(rejection(b"")) == "The file is empty."
    assert rejection(b"  \r\n").code == "roster_empty"
    assert rejection(b"\xef\xbb\xbf").code == "roster_empty"

    header_only = rejection(b"name,age\r\n")

    assert header_only.code == "roster_empty"
    assert str(header_only) == "The roster has a header but no rows."


def test_it_rejects_a_roster_whose_first_row_is_not_a_header():
    rejected = rejection(b",\nname,age\nAnn,12\n")

    assert rejected.code == "roster_no_header"
    assert str(rejected) == "Row 1 must be the header (the column names); it is empty."


def test_it_rejects_rows_over_the_cap_and_accepts_exactly_the_cap():
    data = b"name\nAnn\n\nBo\nCy\n"

    rejected = rejection(data, max_rows=2)

    assert rejected.code == "roster_too_many_rows"
    assert str(rejected) == (
        "The roster has more than 2 rows; split it into files of at most 2 rows."
    )
    assert open_roster(data, max_rows=3).row_count == 3


def test_it_takes_the_row_cap_from_settings(settings):
    settings.REELCAST_ROSTER_MAX_ROWS = 1

    assert rejection(b"name\nAnn\nBo\n").code == "roster_too_many_rows"


def test_it_rejects_broken_csv_quoting_with_the_row_number():
    rejected = rejection(b'name,age\nAnn,12\n"Bo,11\n')

    assert rejected.code == "roster_csv_syntax"
    assert str(rejected).startswith("Row 3 cannot be read as CSV (unexpected end of data)")


def test_it_rejects_a_header_that_names_a_column_twice():
    rejected = rejection(b"name,age,Name\nAnn,12,Ann\n")

    assert rejected.code == "roster_header"
    assert str(rejected) == "Columns appear twice in the header: 'name and Name'."


# -- header matching ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    ["name", "Student Name", "student_name", " STUDENT-name ", "Ｓｔｕｄｅｎｔ　Ｎａｍｅ"],
)
def test_it_matches_a_column_by_name_or_label(header):
    roster = open_roster(f"{header},AGE,End-User\nAnn,12,u-1\n".encode())

    mapping = match_columns(roster.columns, VARIABLES)

    assert mapping == {roster.columns[0]: "name", "AGE": "age", "End-User": "end_user"}
    assert [map_row(row.cells, mapping) for row in roster.rows()] == [
        {"name": "Ann", "age": "12", "end_user": "u-1"}
    ]


def test_it_normalises_header_spacing_and_width():
    roster = open_roster("  Student\u3000 Name ,ａｇｅ\nAnn,12\n".encode())

    assert roster.columns == ["Student Name", "age"]


def test_it_rejects_unknown_and_missing_columns_by_name():
    with pytest.raises(RosterRejected) as caught:
        match_columns(["age", "nickname", "Shoe size"], VARIABLES)

    assert caught.value.code == "roster_header"
    assert str(caught.value) == (
        "Unknown columns: 'nickname', 'Shoe size'. Missing required columns: name. "
        "Expected columns: name (Student Name), age (optional), house (optional), "
        "end_user (optional)."
    )
    assert caught.value.details["unknown"] == ["nickname", "Shoe size"]
    assert caught.value.details["missing"] == ["name"]


def test_it_rejects_two_columns_for_one_variable():
    with pytest.raises(RosterRejected) as caught:
        match_columns(["name", "Student Name"], VARIABLES)

    assert caught.value.code == "roster_header"
    assert caught.value.details["duplicate"] == ["name and Student Name"]


def test_it_rejects_a_template_with_a_required_image_variable():
    variables = [*VARIABLES, {"name": "photo", "type": "image"}]

    with pytest.raises(RosterRejected) as caught:
        match_columns(["name"], variables)

    assert caught.value.code == "roster_template"
    assert str(caught.value) == (
        "This template needs an image for photo, which a roster cannot carry; create these "
        "videos one at a time instead."
    )


def test_it_rejects_a_column_for_an_optional_image_variable():
    variables = [*VARIABLES, {"name": "photo", "type": "image", "required": False}]

    assert match_columns(["name"], variables) == {"name": "name"}
    with pytest.raises(RosterRejected) as caught:
        match_columns(["name", "photo"], variables)

    assert caught.value.details["image"] == ["photo"]


# -- XLSX ---------------------------------------------------------------------------------------


def test_it_reads_an_xlsx_roster_as_text_cells():
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["name", "age", "score", "born", "seen", "ok", "note"])
    sheet.append(["Ann", 12, 1.5, datetime.date(2014, 5, 1), None, True, None])
    sheet.append([])
    sheet.append(["张伟", 11.0, 0.1 + 0.2, None, datetime.datetime(2024, 1, 2, 3, 4, 5), False])
    out = io.BytesIO()
    workbook.save(out)

    roster = open_roster(out.getvalue(), "class.xlsx")

    assert (roster.format, roster.encoding) == ("xlsx", None)
    assert roster.columns == ["name", "age", "score", "born", "seen", "ok", "note"]
    assert rows_of(roster) == [
        (
            2,
            {
                "name": "Ann",
                "age": "12",
                "score": "1.5",
                "born": "2014-05-01",
                "seen": "",
                "ok": "TRUE",
                "note": "",
            },
        ),
        (
            4,
            {
                "name": "张伟",
                "age": "11",
                "score": "0.3",
                "born": "",
                "seen": "2024-01-02T03:04:05",
                "ok": "FALSE",
                "note": "",
            },
        ),
    ]


def test_it_reports_formula_cells_in_an_xlsx():
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["name", "age"])
    sheet.append(["Ann", "=1+1"])
    sheet.append(["Bo", -5, None, "stray"])
    text_cell = sheet.cell(row=4, column=1, value="=cmd|' /C calc'!A0")
    text_cell.data_type = "s"
    sheet.cell(row=4, column=2, value=7)
    out = io.BytesIO()
    workbook.save(out)

    rows = list(open_roster(out.getvalue()).rows())

    assert [row.cells for row in rows] == [
        {"name": "Ann", "age": "=1+1"},
        {"name": "Bo", "age": "-5"},
        {"name": "=cmd|' /C calc'!A0", "age": "7"},
    ]
    assert [row_problems(row) for row in rows] == [
        ["cell 'age' looks like a spreadsheet formula ('=1+1'); formulas are not accepted"],
        ["column 4 has a value ('stray') but no header; add a header or delete the value"],
        [
            "cell 'name' looks like a spreadsheet formula ('=cmd|' /C ca…'); formulas are "
            "not accepted"
        ],
    ]


def test_it_reads_an_xlsx_whose_dimension_understates_the_sheet():
    source = zipfile.ZipFile(io.BytesIO(xlsx_bytes([["name", "age"], ["Ann", 12], ["Bo", 11]])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                assert b'<dimension ref="A1:B3" />' in content
                content = content.replace(b'<dimension ref="A1:B3" />', b'<dimension ref="A1" />')
            archive.writestr(item, content)

    roster = open_roster(out.getvalue())

    assert rows_of(roster) == [(2, {"name": "Ann", "age": "12"}), (3, {"name": "Bo", "age": "11"})]


# -- row checks ---------------------------------------------------------------------------------


def test_it_reports_formula_cells_in_a_csv_but_allows_plain_numbers():
    data = (
        "name,note\n"
        "=cmd|' /C calc'!A0,x\n"
        "+SUM(A1),@SUM(1)\n"
        "－1+1, =1\n"
        '\tAnn,"\rBo"\n'
        "-5,+1.5\n"
        "－５,1e3\n"
        "Ann-Marie,x@y.z\n"
    ).encode()

    problems = [row_problems(row) for row in open_roster(data).rows()]

    formula = "cell '{}' looks like a spreadsheet formula ('{}'); formulas are not accepted"
    assert problems == [
        [formula.format("name", "=cmd|' /C ca…")],
        [formula.format("name", "+SUM(A1)"), formula.format("note", "@SUM(1)")],
        [formula.format("name", "－1+1"), formula.format("note", " =1")],
        [formula.format("name", "\\tAnn"), formula.format("note", "\\rBo")],
        [],
        [],
        [],
    ]


def test_it_reports_long_cells_and_nul_characters():
    cells = {"name": "A" * 2001, "note": "ok", "code": "x\x00y"}

    assert row_problems(cells) == [
        "cell 'name' is 2001 characters long; the limit is 2000",
        "cell 'code' contains a NUL character",
    ]
    assert row_problems({"name": "A" * 2000}) == []


def test_it_reports_a_repeated_row_as_a_duplicate_of_the_first():
    data = "name,end_user\nLi Wei,1\nAnn,2\n li wei ,1\nＬＩ　ＷＥＩ,1\nLi Wei,3\n".encode()
    tracker = DuplicateTracker()

    found = [(row.number, tracker.check(row)) for row in open_roster(data).rows()]

    assert found == [(2, None), (3, None), (4, 2), (5, 2), (6, None)]


def test_it_treats_full_width_and_case_as_the_same_for_duplicates():
    tracker = DuplicateTracker()

    assert tracker.check(RosterRow(2, {"name": "ＬＩ WEI"})) is None
    assert tracker.check(RosterRow(7, {"name": " li wei"})) == 2
    assert tracker.check(RosterRow(8, {"name": "li  wei"})) is None


# -- scale --------------------------------------------------------------------------------------


def test_it_reads_10000_csv_rows():
    lines = ["name,age,house"] + [f"Student {i},{i % 18},blue" for i in range(10_000)]
    data = ("\r\n".join(lines) + "\r\n").encode()

    rows = list(open_roster(data).rows())

    assert len(rows) == 10_000
    assert (rows[-1].number, rows[-1].cells) == (
        10_001,
        {"name": "Student 9999", "age": "9", "house": "blue"},
    )


def test_it_reads_10000_xlsx_rows():
    data = xlsx_bytes(
        [["name", "age", "house"]] + [[f"Student {i}", i % 18, "blue"] for i in range(10_000)],
        write_only=True,
    )

    rows = list(open_roster(data).rows())

    assert len(rows) == 10_000
    assert (rows[-1].number, rows[-1].cells) == (
        10_001,
        {"name": "Student 9999", "age": "9", "house": "blue"},
    )


# -- values -------------------------------------------------------------------------------------


def test_it_coerces_number_cells_and_leaves_the_rest():
    variables = [*VARIABLES, {"name": "height", "type": "number"}]

    values, errors = coerce_row(
        {"name": " Ann ", "age": "１２", "house": "", "height": "1.5", "end_user": "7"}, variables
    )

    assert values == {"name": " Ann ", "age": 12, "house": "", "height": 1.5, "end_user": "7"}
    assert errors == {}
    values.pop("end_user")
    cleaned, clean_errors = clean_values(variables, values)
    assert clean_errors == {}
    assert cleaned.values == {"name": "Ann", "age": 12, "house": "red", "height": 1.5}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("12", 12), ("-5", -5), ("+3", 3), ("12.0", 12), (" 7 ", 7), ("1e2", 100), ("", "")],
)
def test_it_coerces_whole_numbers_for_an_integer_variable(raw, expected):
    values, errors = coerce_row({"age": raw}, VARIABLES)

    assert (values, errors) == ({"age": expected}, {})
    assert type(values["age"]) is type(expected)


@pytest.mark.parametrize("raw", ["twelve", "1,5", "1e999", "nan", "inf", "0x10", "9" * 5000])
def test_it_reports_a_number_cell_it_cannot_read(raw):
    values, errors = coerce_row({"age": raw}, VARIABLES)

    assert values == {"age": raw}
    assert list(errors) == ["values.age"]
    assert errors["values.age"].startswith("Must be a number (got '")


def test_it_coerces_a_decimal_for_a_non_integer_variable():
    values, _ = coerce_row({"height": "12.0"}, [{"name": "height", "type": "number"}])

    assert values == {"height": 12.0}
    assert type(values["height"]) is float


# -- export -------------------------------------------------------------------------------------


def test_it_escapes_formula_values_for_spreadsheets():
    assert csv_safe('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
    assert [csv_safe(v) for v in ["+1+1", "-1+1", "@SUM(1)", "\tx", "\rx", "＝1", " =1"]] == [
        "'+1+1",
        "'-1+1",
        "'@SUM(1)",
        "'\tx",
        "'\rx",
        "'＝1",
        "' =1",
    ]
    assert [csv_safe(v) for v in ["-5", "+1.5", -5, 1.5, None, "Ann", "a=b"]] == [
        "-5",
        "+1.5",
        "-5",
        "1.5",
        "",
        "Ann",
        "a=b",
    ]


def test_it_writes_csv_that_excel_opens_and_that_reads_back_escaped():
    data = write_csv(
        ["name", "link"],
        [["张伟", '=HYPERLINK("http://x","y")'], ["Ann", -5], ["@cmd", "two\nlines"]],
    )

    assert data == (
        b"\xef\xbb\xbfname,link\r\n" + "张伟".encode() + b',"\'=HYPERLINK(""http://x"",""y"")"\r\n'
        b"Ann,-5\r\n"
        b'\'@cmd,"two\nlines"\r\n'
    )
    read_back = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert read_back == [
        ["name", "link"],
        ["张伟", '\'=HYPERLINK("http://x","y")'],
        ["Ann", "-5"],
        ["'@cmd", "two\nlines"],
    ]
