"""docs/configuration.md is the complete reference of tsidp's settings.

These tests fail when a flag printed by ``tsidp --help``, or an environment variable name that the
Swift sources look up, is missing from docs/configuration.md, and when a default the document gives
for a flag disagrees with the default ``--help`` prints.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT

DOC = REPO_ROOT / "docs" / "configuration.md"
SOURCES = REPO_ROOT / "Sources"

# A name like TSIDP_PORT or TS_AUTHKEY in a Swift string literal, and any name looked up as
# environment["NAME"] (which also finds HOME and PATH, which have no underscore).
ENV_LITERAL = re.compile(r'"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"')
ENV_LOOKUP = re.compile(r'environment\[\s*"([A-Za-z_][A-Za-z0-9_]*)"\s*\]')
ENV_NAME_IN_TEXT = re.compile(r"\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b")

# Flags whose documented defaults are compared with --help's.
DEFAULT_CHECKED = [
    "--port",
    "--local-port",
    "--socket",
    "--hostname",
    "--log",
    "--idle-timeout",
    "--read-header-timeout",
    "--read-body-timeout",
    "--max-connections-per-peer",
    "--max-connections",
]


@pytest.fixture(scope="module")
def help_text(tsidp_binary) -> str:
    result = subprocess.run(
        [str(tsidp_binary), "--help"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    text = result.stdout + result.stderr
    assert result.returncode == 0, f"tsidp --help exited with {result.returncode}: {text}"
    assert "OPTIONS:" in text, text
    return text


@pytest.fixture(scope="module")
def doc_text() -> str:
    return DOC.read_text()


def help_options(help_text: str) -> dict:
    """{primary long flag: {"names": [...], "text": the option's whole help, whitespace collapsed}}."""
    section = help_text.split("OPTIONS:", 1)[1]
    options: dict = {}
    current = None
    for line in section.splitlines():
        if re.match(r"^  -", line):
            head = line.strip()
            # The names end where two spaces start the description (or the line ends).
            names_part = re.split(r"\s{2,}", head, maxsplit=1)[0]
            names = [n for n in re.findall(r"--[a-z][a-z0-9-]*", names_part) if not n.startswith("--no-")]
            assert names, f"cannot read the flag names of {line!r}"
            current = {"names": names, "text": head}
            options[names[0]] = current
        elif current is not None and line.strip():
            current["text"] += " " + line.strip()
    for option in options.values():
        option["text"] = re.sub(r"\s+", " ", option["text"])
    return options


def help_default(option: dict) -> str:
    match = re.search(r"\(default: (.*?)\)\s*$", option["text"])
    assert match, f"--help gives no default for {option['names'][0]}: {option['text']}"
    return match.group(1)


def mentions_flag(doc: str, flag: str) -> bool:
    return re.search(r"`" + re.escape(flag) + r"(?![a-z0-9-])", doc) is not None


def mentions_name(doc: str, name: str) -> bool:
    return re.search(r"(?<![A-Za-z0-9_])" + re.escape(name) + r"(?![A-Za-z0-9_])", doc) is not None


def source_environment_names() -> set:
    names: set = set()
    for path in sorted(SOURCES.rglob("*.swift")):
        text = path.read_text(errors="replace")
        names.update(ENV_LITERAL.findall(text))
        names.update(ENV_LOOKUP.findall(text))
    return names


def doc_table_rows(doc: str) -> list:
    """Every row of every Markdown table with a "Default" column, as (cells, default column index,
    environment column index or None)."""
    rows = []
    header = None
    for line in doc.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        if "Default" in header:
            environment = header.index("Environment") if "Environment" in header else None
            rows.append((cells, header.index("Default"), environment))
    return rows


def rows_for_flag(doc: str, flag: str) -> list:
    # Table cells hold `\|` for a literal bar; the first cell names the flag, e.g. `--port N`.
    return [
        row
        for row in doc_table_rows(doc.replace("\\|", "¦"))
        if re.match(r"`" + re.escape(flag) + r"(?![a-z0-9-])", row[0][0])
    ]


def tokens(text: str) -> list:
    return re.findall(r"[A-Za-z0-9_./:<>-]+", text.replace("`", ""))


# ---------------------------------------------------------------------------


def test_every_help_flag_is_documented(help_text, doc_text):
    options = help_options(help_text)
    # The parse found the real list, not an empty or truncated one.
    for expected in ("--port", "--dev", "--dev-identities", "--unix-socket", "--help", "--version"):
        assert expected in {n for o in options.values() for n in o["names"]}, (expected, sorted(options))
    missing = sorted(
        name for option in options.values() for name in option["names"] if not mentions_flag(doc_text, name)
    )
    assert not missing, f"flags printed by tsidp --help but not in {DOC.relative_to(REPO_ROOT)}: {missing}"


def test_every_flag_has_a_row_in_the_flag_table(help_text, doc_text):
    options = help_options(help_text)
    missing = sorted(primary for primary in options if primary != "--help" and not rows_for_flag(doc_text, primary))
    assert not missing, f"flags with no table row (first cell `--flag …`) in {DOC.name}: {missing}"


def test_environment_variables_of_help_are_documented(help_text, doc_text):
    names = set(ENV_NAME_IN_TEXT.findall(help_text))
    assert {"TSIDP_PORT", "TS_STATE_DIR", "TAILSCALE_USE_WIP_CODE"} <= names, sorted(names)
    missing = sorted(name for name in names if not mentions_name(doc_text, name))
    assert not missing, f"environment variables named by tsidp --help but not in {DOC.name}: {missing}"


def test_every_environment_variable_in_the_sources_is_documented(doc_text):
    names = source_environment_names()
    # The scan itself works: these are looked up today in three different modules.
    for expected in ("TSIDP_PORT", "TAILSCALE_USE_WIP_CODE", "LISTEN_FDS", "TSIDP_SYSTEM_CRYPTO", "POD_NAME", "HOME"):
        assert expected in names, f"the scan of {SOURCES} did not find {expected}: {sorted(names)}"
    missing = sorted(name for name in names if not mentions_name(doc_text, name))
    assert not missing, (
        f"environment variables that Sources/ looks up but {DOC.relative_to(REPO_ROOT)} does not mention: {missing}"
    )


def test_documented_environment_variable_of_each_flag_matches_help(help_text, doc_text):
    problems = []
    for primary, option in help_options(help_text).items():
        match = re.search(r"Env: ([A-Z][A-Z0-9_]*)", option["text"])
        if not match:
            continue
        for cells, _, environment in rows_for_flag(doc_text, primary):
            if environment is not None and not mentions_name(cells[environment], match.group(1)):
                problems.append(f"{primary}: help says {match.group(1)}, the table says {cells[environment]!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("flag", DEFAULT_CHECKED)
def test_documented_default_matches_help(help_text, doc_text, flag):
    options = help_options(help_text)
    assert flag in options, f"{flag} is not in tsidp --help any more; update DEFAULT_CHECKED"
    expected = tokens(help_default(options[flag]))
    assert expected, flag
    rows = rows_for_flag(doc_text, flag)
    assert rows, f"{flag} has no table row with a Default column in {DOC.name}"
    for cells, default_column, _ in rows:
        documented = tokens(cells[default_column])
        absent = [token for token in expected if token not in documented]
        assert not absent, (
            f"{flag}: tsidp --help says the default is {help_default(options[flag])!r}, "
            f"{DOC.name} says {cells[default_column]!r} (missing {absent})"
        )
