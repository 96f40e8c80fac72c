"""Hostile or merely foreign roster files: never stored garbled, never a CPU sink.

A Shift-JIS class list used to decode "successfully" as GB18030 and every Japanese name was
stored as nonsense (山田太郎 became 嶳揷懢榊). A 5 KB workbook with one cell in row 1,048,576
made openpyxl yield a million empty rows (1.8-2.4 s of CPU) before the roster was even counted.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile

import pytest
from openpyxl import Workbook

from generation import tasks
from generation.models import Batch, Job
from generation.rosters import open_roster
from tests import factories

pytestmark = pytest.mark.django_db

JAPANESE_NAMES = ["山田太郎", "佐藤花子", "鈴木一郎", "たかはしひな", "渡辺翔太"]


@pytest.fixture
def template(tenant):
    return factories.make_template(
        tenant,
        variables=[
            {"name": "name", "type": "text", "max_length": 32},
            {"name": "virtue", "type": "choice", "choices": ["courage", "honesty"]},
        ],
        prompt="{name} shows {virtue}.",
        title="{name}",
    )


def _upload(api, template, data: bytes, filename: str):
    upload = io.BytesIO(data)
    upload.name = filename
    return api.post(
        "/api/v1/batches/",
        {"template": str(template.id), "file": upload},
        format="multipart",
    )


def test_a_shift_jis_roster_imports_every_japanese_name_exactly(api, template):
    text = "name,virtue\r\n" + "".join(f"{name},courage\r\n" for name in JAPANESE_NAMES)
    data = text.encode("cp932")  # Japanese Excel's "CSV (comma delimited)"
    assert data.decode("gb18030") != text  # the bytes also decode, as nonsense, in GB18030

    response = _upload(api, template, data, "クラス名簿.csv")
    assert response.status_code == 202, response.json()
    assert response.json()["source_encoding"] == "cp932"
    tasks.batch_chunk(response.json()["id"])

    assert sorted(Job.objects.values_list("values__name", flat=True)) == sorted(JAPANESE_NAMES)


@pytest.mark.parametrize(
    ("names", "encoding"),
    [
        (["张伟", "欧阳震华", "李娜"], "gbk"),
        (["陳大文", "林小美", "黃志強"], "cp950"),
        (["José", "Zoë Müller", "Seán O’Brien"], "cp1252"),
        (["山田太郎", "さとう はなこ"], "cp932"),
    ],
)
def test_each_spreadsheet_code_page_is_read_as_itself(names, encoding):
    text = "name,virtue\r\n" + "".join(f"{name},courage\r\n" for name in names)

    roster = open_roster(text.encode(encoding))

    assert roster.encoding == ("gb18030" if encoding == "gbk" else encoding)
    assert [row.cells["name"] for row in roster.rows()] == names


def test_text_that_reads_as_no_language_is_refused_with_the_reason(api, template):
    response = _upload(api, template, b"name,virtue\r\n\x80\x80\x80,courage\r\n", "class.csv")

    assert response.status_code == 400
    assert response.json()["code"] == "roster_encoding"
    assert response.json()["detail"] == (
        "The file's text is not UTF-8, UTF-16, GBK/GB18030, Big5, Shift-JIS or Windows-1252, so "
        "its characters cannot be read reliably. Save it from your spreadsheet program as 'CSV "
        "UTF-8' or as an Excel workbook (.xlsx)."
    )
    assert Batch.objects.count() == 0


def test_a_file_that_reads_equally_well_in_two_code_pages_is_refused_naming_both(api, template):
    # One surname and a rare given-name character: as GBK it is 郝堃, as Shift-JIS 壨垐.
    response = _upload(api, template, "name,virtue\r\n郝堃,courage\r\n".encode("gbk"), "a.csv")

    assert response.status_code == 400
    assert response.json()["code"] == "roster_encoding"
    assert response.json()["detail"].startswith(
        "The file's text is not UTF-8, and it reads almost equally well as GBK/GB18030 "
        "(Simplified Chinese Windows) and as Shift-JIS (Japanese Windows); reading it as the "
        "wrong one would store every name garbled."
    )
    assert Batch.objects.count() == 0


def test_a_comma_roster_whose_notes_quote_titles_between_semicolons_is_read_with_commas(
    api, tenant
):
    # csv.Sniffer's quote heuristics read this as semicolon-separated and refused the header.
    template = factories.make_template(
        tenant,
        variables=[
            {"name": "name", "type": "text", "max_length": 32},
            {"name": "note", "type": "text", "max_length": 200},
        ],
        prompt="{name} reads. {note}",
        title="{name}",
    )
    out = io.StringIO()
    csv.writer(out).writerows(
        [
            ["name", "note"],
            ["Ann", 'Favourite books: "Matilda"; "Holes"; "Wonder"'],
            ["Ben", 'Says "please"; "thank you"'],
        ]
    )

    response = _upload(api, template, out.getvalue().encode(), "class.csv")
    assert response.status_code == 202, response.json()
    tasks.batch_chunk(response.json()["id"])

    assert sorted(Job.objects.values_list("values__name", flat=True)) == ["Ann", "Ben"]
    assert Batch.objects.get().errors == []


def test_a_csv_line_of_millions_of_commas_is_refused_before_it_is_split(api, template):
    data = b"name,virtue\r\nAnn,courage\r\n" + b"," * 2_000_000 + b"x\r\n"

    response = _upload(api, template, data, "class.csv")

    assert response.status_code == 400
    assert response.json()["code"] == "roster_too_many_columns"
    assert response.json()["detail"].startswith(
        "Line 3 has 2000001 cells; a roster has at most 100 columns."
    )
    assert Batch.objects.count() == 0


# -- XLSX extent -------------------------------------------------------------------------------


def _workbook_with_sheet_xml(edit) -> bytes:
    """A real two-row workbook whose first sheet's XML is passed through ``edit``."""
    book = Workbook()
    book.active.append(["name", "virtue"])
    book.active.append(["Ann", "courage"])
    plain = io.BytesIO()
    book.save(plain)
    forged = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(plain.getvalue())) as source,
        zipfile.ZipFile(forged, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                content = edit(content.decode()).encode()
            target.writestr(item, content)
    return forged.getvalue()


def test_an_xlsx_declaring_the_whole_sheet_is_refused_before_it_is_read(api, template):
    data = _workbook_with_sheet_xml(
        lambda xml: re.sub(r'<dimension ref="[^"]+"', '<dimension ref="A1:XFD1048576"', xml, 1)
    )
    assert b"A1:XFD1048576" in zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml")

    response = _upload(api, template, data, "class.xlsx")

    assert response.status_code == 400
    assert response.json()["code"] == "roster_too_many_rows"
    assert response.json()["detail"] == (
        "The worksheet says it spans A1:XFD1048576, 1048576 rows; a roster has at most 10000 "
        "rows below its header. Delete the rows below the roster, or split it into smaller files."
    )
    assert Batch.objects.count() == 0


def test_an_xlsx_with_one_cell_in_the_last_row_is_refused_before_it_is_read(api, template):
    last = '<row r="1048576"><c r="A1048576" t="inlineStr"><is><t>x</t></is></c></row>'
    data = _workbook_with_sheet_xml(lambda xml: xml.replace("</sheetData>", last + "</sheetData>"))
    assert len(data) < 8 * 1024

    response = _upload(api, template, data, "class.xlsx")

    assert response.status_code == 400
    assert response.json()["code"] == "roster_too_many_rows"
    assert response.json()["detail"].startswith(
        "The worksheet has a row numbered 1048576; a roster has at most 10000 rows below its "
        "header."
    )


def test_an_xlsx_declaring_thousands_of_columns_is_refused(api, template):
    data = _workbook_with_sheet_xml(
        lambda xml: re.sub(r'<dimension ref="[^"]+"', '<dimension ref="A1:AAA3"', xml, 1)
    )

    response = _upload(api, template, data, "class.xlsx")

    assert response.status_code == 400
    assert response.json()["code"] == "roster_too_many_columns"
    assert response.json()["detail"] == (
        "The worksheet says it spans A1:AAA3, 703 columns; a roster has at most 100. Delete the "
        "columns right of the roster."
    )


def test_an_ordinary_xlsx_with_its_true_dimension_is_still_read(api, template):
    data = _workbook_with_sheet_xml(lambda xml: xml)

    response = _upload(api, template, data, "class.xlsx")

    assert response.status_code == 202, response.json()
    assert response.json()["total_rows"] == 1
