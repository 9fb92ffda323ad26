"""The report in a real headless browser: a small MST release with --pdf, approved, re-rendered as the filing copy.

One release of a 1,500-row table whose rows are recognisable (every ``value``
is a distinct six-decimal number; one category is held by 3 rows only),
under the approval policy, with ``--pdf``. Chromium loads its report.html
(``--dump-dom``): it renders, every section is there, and no training row
or rare category appears; the PDF's text holds the epsilon, the decision
and the approval block; after ``dpsynth approve``, ``dpsynth report --pdf``
writes the filing copy beside the sealed directory, naming the approver,
and the directory still verifies.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dpsynth.cli import app
from dpsynth.errors import UsageError
from dpsynth.evidence.keys import load_identity
from dpsynth.report.browser import dump_dom, find_browser
from dpsynth.report.html import fmt_number
from dpsynth.schema import Column, Schema

pypdf = pytest.importorskip("pypdf", reason="pypdf (the test extra) extracts the PDF's text")
REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "dpsynth" / "data" / "approval-policy.toml"
RARE = "zz-rare-q7Kx"
SECTIONS = (
    "decision",
    "criteria",
    "budget",
    "schema",
    "audit",
    "attacks",
    "columns",
    "domain",
    "assumptions",
    "reproducibility",
    "approval",
)
DEFAULT_CRITERIA = ("singling-out", "linkability", "inference", "membership")
runner = CliRunner()


def _chromium() -> None:
    try:
        find_browser()
    except UsageError:
        pytest.skip("headless Chromium not found: install the Debian package chromium (.ci/run does)")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


class _Text(HTMLParser):
    """Visible text and attribute values of a DOM (what a reader or a copy-paste could get)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key == "id" and value:
                self.ids.add(value)
            if value and key in ("alt", "title", "content"):
                self.parts.append(value)

    def handle_data(self, data):
        self.parts.append(data)


def _text_and_ids(dom: str) -> tuple[str, set[str]]:
    parser = _Text()
    parser.feed(dom)
    return " ".join(parser.parts), parser.ids


def _pdf_text(path: Path) -> str:
    reader = pypdf.PdfReader(str(path))
    return "\n".join(page.extract_text() for page in reader.pages)


def _leaks(text: str, frame: pd.DataFrame) -> list[str]:
    """Training-table values found in ``text``: any row's six-decimal value, or the rare category."""
    found = [RARE] if RARE in text else []
    numbers = set(re.findall(r"(?<![\d.])\d+\.\d{6}(?!\d)", text))
    return found + sorted(numbers & set(frame["value"].map(lambda v: f"{v:.6f}")))


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> dict:
    _chromium()
    root = tmp_path_factory.mktemp("pdf")
    rng = np.random.default_rng(5)
    n = 1500
    group = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2]).astype(object)
    group[:3] = RARE  # 3 rows: below the report's min_cell, so never named
    value = 10 + np.round(rng.uniform(0, 80, size=n), 6)
    value = np.where(np.round(value * 1e6) % 10 == 0, value + 1.3e-5, value)  # six significant decimals each
    frame = pd.DataFrame({"group": group, "value": np.round(value, 6), "flag": rng.choice(["no", "yes"], size=n)})
    data, schema, ledger, keys = root / "data.csv", root / "schema.json", root / "ledger.sqlite", root / "keys"
    frame.to_csv(data, index=False, float_format="%.6f")
    Schema(
        columns=(
            Column("group", "categorical", categories=("a", "b", "c", RARE)),
            Column("value", "numeric", lower=0, upper=100, bins=10),
            Column("flag", "categorical", categories=("no", "yes")),
        ),
        name="toy",
    ).save(schema)
    out = root / "release"
    steps: dict = {"root": root, "frame": frame, "out": out, "ledger": ledger, "keys": keys}
    trusted = root / "trusted"
    trusted.mkdir()
    for name in ("olivia", "omar"):
        assert invoke("keys", "new", name, "--dir", keys).exit_code == 0
        (trusted / f"{name}.pub").write_text(invoke("keys", "export", name, "--dir", keys).stdout)
    steps["trusted"] = trusted
    assert invoke("budget", "init", ledger, "--dataset", "toy", "--epsilon", "5", "--delta", "1e-5").exit_code == 0
    steps["release"] = invoke(
        "release", data, "--schema", schema, "--epsilon", "1", "--delta", "1e-6", "--ledger", ledger,
        "--dataset", "toy", "--out", out, "--seed", "3", "--param", "iters=200", "--policy", POLICY,
        "--as", "olivia", "--keys-dir", keys, "--pdf",
    )  # fmt: skip
    steps["dom"] = dump_dom(out / "report.html")
    steps["release_pdf"] = _pdf_text(out / "report.pdf")
    steps["approve"] = invoke(
        "approve", out, "--ledger", ledger, "--as", "omar", "--keys-dir", keys, "--reason", "criteria met, see 4.2"
    )
    steps["report"] = invoke("report", out, "--pdf", "--ledger", ledger, "--trusted-keys", trusted)
    steps["verify"] = invoke("verify", out, "--ledger", ledger)
    return steps


def test_release_with_pdf_is_sealed_and_still_verifies(walk):
    assert walk["release"].exit_code == 5, walk["release"].output  # awaiting approval
    out = walk["out"]
    listed = {f["name"] for f in json.loads((out / "bundle.json").read_text())["files"]}
    assert "report.pdf" in listed and "report.html" in listed
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    assert walk["approve"].exit_code == 0, walk["approve"].output
    assert walk["verify"].exit_code == 0, walk["verify"].output
    assert "VERIFIED" in walk["verify"].output


def test_the_report_renders_in_chromium_with_every_section(walk):
    text, ids = _text_and_ids(walk["dom"])
    assert "<body" in walk["dom"] and "PASS" in text
    assert set(SECTIONS) <= ids, sorted(set(SECTIONS) - ids)
    assert {f"criterion-{c}" for c in DEFAULT_CRITERIA} <= ids
    assert {"approval-operator", "approval-approver", "approval-status"} <= ids
    for test in ("singling_out_risk", "linkage_risk", "attribute_inference_risk", "mia_distance"):
        assert test in text
    assert "Residual risk" in text and "Assumptions" in text


def test_no_training_row_appears_in_the_dom_or_the_pdfs(walk):
    frame = walk["frame"]
    assert _leaks(frame.to_csv(index=False, float_format="%.6f"), frame)  # the check does find rows where they are
    assert _leaks(_text_and_ids(walk["dom"])[0], frame) == []
    assert _leaks(walk["dom"], frame) == []  # markup and attributes too
    assert _leaks(walk["release_pdf"], frame) == []
    assert _leaks(_pdf_text(walk["root"] / "release.report.pdf"), frame) == []


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_release_pdf_holds_epsilon_decision_and_awaiting_approval(walk):
    manifest = json.loads((walk["out"] / "manifest.json").read_text())
    text = walk["release_pdf"]
    assert f"ε = {fmt_number(manifest['privacy']['epsilon'])}" in text
    assert "PASS" in text and "Released" in text
    operator = load_identity("olivia", walk["keys"])
    squeezed = _squeezed(text)
    assert "Approval" in text and "AWAITINGAPPROVAL" in squeezed
    assert "olivia" in text and operator.key_id in squeezed
    assert "awaitingapproval:`dpsynthapprove`" in squeezed


def test_filing_copy_after_approval_names_the_approver(walk):
    assert walk["report"].exit_code == 0, walk["report"].output
    target = walk["root"] / "release.report.pdf"
    assert str(target) in _squeezed(walk["report"].output)
    text = _pdf_text(target)
    squeezed = _squeezed(text)
    manifest = json.loads((walk["out"] / "manifest.json").read_text())
    approver = load_identity("omar", walk["keys"])
    assert f"ε = {fmt_number(manifest['privacy']['epsilon'])}" in text and "PASS" in text
    assert "APPROVED" in text and "omar" in text and approver.key_id in squeezed
    assert "criteriamet,see4.2" in squeezed
    assert "AWAITINGAPPROVAL" not in squeezed
    assert "thechain,thespendandthedecisionrecordsagree" in squeezed  # --ledger was checked
    assert "Everysigner'skeymatchedtheirtrustedpublickey" in squeezed  # --trusted-keys too
    assert "sealed report.html" in text  # the column panels come from the signed report
    assert not (walk["out"] / "release.report.pdf").exists()


def test_report_of_a_changed_release_is_refused(walk, tmp_path):
    import shutil

    out = tmp_path / "release"
    shutil.copytree(walk["out"], out)
    html = invoke("report", out)
    assert html.exit_code == 0, html.output
    assert (tmp_path / "release.report.html").is_file() and not (out / "release.report.html").exists()
    data = bytearray((out / "synthetic.csv").read_bytes())
    data[len(data) // 2] ^= 0x01
    (out / "synthetic.csv").write_bytes(bytes(data))
    (tmp_path / "release.report.html").unlink()
    refused = invoke("report", out)
    assert refused.exit_code == 6 and "synthetic.csv: sha256 does not match" in refused.output
    assert not (tmp_path / "release.report.html").exists()


def test_report_checks_signers_against_trusted_keys(walk, tmp_path):
    import shutil

    only_operator = tmp_path / "trusted"
    only_operator.mkdir()
    shutil.copy(walk["trusted"] / "olivia.pub", only_operator / "olivia.pub")
    target = tmp_path / "copy.html"
    refused = invoke("report", walk["out"], "--out", target, "--trusted-keys", only_operator)
    assert refused.exit_code == 6 and "'omar' is not among the trusted keys" in refused.output
    assert not target.exists()
