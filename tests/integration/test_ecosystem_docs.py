"""--help, the man page's option list and README's tables come from one table
(STYLE "Habits"): `mcpfs --options-table=tsv` prints it, and each of the three is
compared with it here, so that none can drift.  Also the documents the
ecosystem issue promised: CHANGELOG, SECURITY's key handling, HACKING."""

import os
import re

import pytest

from ecosystem_lib import build_dir, check_man_page, render_man, table_rows
from mcpfs_testlib import REPO, run


def markdown_table_after(text, heading):
    """The rows (lists of cells, backticks removed) of the first table after a
    heading line."""
    start = text.index(heading)
    rows = []
    started = False
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            started = True
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if all(re.fullmatch(r":?-+:?", c) for c in cells):
                continue
            rows.append([c.replace("`", "").replace("\\|", "|") for c in cells])
        elif started:
            break
    assert rows, "no table after %r" % heading
    return rows


def check_readme_tables(readme, opts, keys):
    rows = markdown_table_after(readme, "\n## Options\n")
    assert rows[0] == ["option", "-o form (fstab)", "meaning", "default"]
    got = [tuple(r) for r in rows[1:]]
    assert got == opts, ("README's option table differs from the table of --help; "
                         "paste `mcpfs --options-table=markdown`:\n%r\n%r" % (got, opts))
    rows = markdown_table_after(readme, "\n### Config keys")
    assert rows[0] == ["key", "default", "meaning"]
    assert [tuple(r) for r in rows[1:]] == keys


def test_readme_option_table_is_the_table(mcpfs_bin):
    opts, keys = table_rows(mcpfs_bin)
    check_readme_tables((REPO / "README.md").read_text(), opts, keys)


def test_help_lists_every_option_and_key(mcpfs_bin):
    opts, keys = table_rows(mcpfs_bin)
    r = run([mcpfs_bin, "--help"])
    assert r.rc == 0, r
    lines = r.out.splitlines()
    for usage, oform, help_, default in opts:
        line = next((ln for ln in lines if ln.strip().startswith(usage + " ")), None)
        assert line is not None, "--help has no line for %s:\n%s" % (usage, r.out)
        assert help_ in line, (usage, line)
        if oform:
            assert "(-o %s" % oform.split("=")[0] in line, (usage, line)
        if default:
            assert "default: " + default in r.out, (usage, default)
    for key, default, help_ in keys:
        assert re.search(r"^  %s +%s \(default: %s\)$" % (re.escape(key), re.escape(help_),
                                                         re.escape(default)),
                         r.out, re.M), (key, r.out)
    # The hidden table is not an option users see.
    assert "--options-table" not in r.out


def test_man_page_option_list_is_the_table(mcpfs_bin):
    opts, keys = table_rows(mcpfs_bin)
    page = build_dir(mcpfs_bin) / "mcpfs.1"
    assert page.is_file(), "%s was not built (is scdoc installed? packaging/build-deps.txt)" \
        % page
    check_man_page(render_man(page), opts, keys)


def test_drift_is_caught(mcpfs_bin):
    """The comparisons above fail on a changed row (a test that cannot fail is a
    defect)."""
    opts, keys = table_rows(mcpfs_bin)
    text = render_man(build_dir(mcpfs_bin) / "mcpfs.1")
    changed = [(u, o, h + " (changed)", d) for (u, o, h, d) in opts]
    with pytest.raises(AssertionError):
        check_man_page(text, changed, keys)
    with pytest.raises(AssertionError):
        check_man_page(text, opts[:-1], keys)
    readme = (REPO / "README.md").read_text()
    check_readme_tables(readme, opts, keys)
    # one option's help text edited in README alone, and one key row dropped
    row = next(ln for ln in readme.splitlines() if ln.startswith("| `%s" % opts[1][0]))
    edited = readme.replace(row, row[:-2] + " (edited) |", 1)
    assert edited != readme
    with pytest.raises(AssertionError):
        check_readme_tables(edited, opts, keys)
    key_line = next(ln for ln in readme.splitlines() if ln.startswith("| `%s`" % keys[0][0]))
    with pytest.raises(AssertionError):
        check_readme_tables(readme.replace(key_line + "\n", "", 1), opts, keys)


def test_options_table_formats(mcpfs_bin):
    for fmt in ("tsv", "markdown", "scdoc", "scdoc-keys", "bash"):
        r = run([mcpfs_bin, "--options-table=" + fmt])
        assert r.rc == 0 and r.out.strip(), r
    r = run([mcpfs_bin, "--options-table=html"])
    assert r.rc == 1
    assert r.err.strip() == ("mcpfs: --options-table: unknown format 'html' "
                             "(tsv, markdown, scdoc, scdoc-keys, bash)")


def test_changelog_security_hacking():
    changelog = (REPO / "CHANGELOG.md").read_text()
    unreleased = changelog.split("## Unreleased", 1)[1].split("\n## ", 1)[0]
    for word in ("meson install", "Debian package", "fstab", "mcpfs@.service", "log line"):
        assert word in unreleased, "CHANGELOG's Unreleased section does not mention %r" % word
    security = (REPO / "SECURITY.md").read_text()
    assert "## The API key" in security
    key = security.split("## The API key", 1)[1].split("\n## ", 1)[0]
    for word in ("--api-key-file", "log", "-d", "environment", "fstab"):
        assert word in key, "SECURITY.md's key section does not cover %r" % word
    hacking = (REPO / "HACKING.md").read_text()
    for word in ("## Build", "## Test", "scripts/fuzz", "## Layout", "dpkg-buildpackage",
                 "bench"):
        assert word in hacking, "HACKING.md does not cover %r" % word


# --- the repository is its own reference ----------------------------------------------------

MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
MD_NAME = re.compile(r"(?<![\w*.])([\w./-]*[A-Za-z_][\w-]*\.md)\b")


def reference_docs():
    """README, HACKING, SECURITY, every document of doc/, the man page sources."""
    docs = [REPO / "README.md", REPO / "HACKING.md", REPO / "SECURITY.md"]
    docs += sorted((REPO / "doc").rglob("*.md"))
    docs += sorted((REPO / "packaging" / "man").glob("*.scd"))
    return docs


def repo_md_names():
    skip = {"build", "build-asan", "build-tsan", "build-fuzz", ".git", "bench"}
    out = set()
    for p in REPO.rglob("*.md"):
        if not skip & set(p.relative_to(REPO).parts):
            out.add(p.name)
    return out


def outside_references(path, text, md_names):
    """What a document cites that is not in the repository: ../shared, links that
    leave the tree or name a missing file, .md files that do not exist here, and
    the word CONTRACT outside doc/interface.md (which explains that name)."""
    bad = []
    if "../shared" in text or "/work/shared" in text:
        bad.append("mentions ../shared")
    for target in MD_LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        resolved = (path.parent / target.split("#")[0]).resolve()
        if REPO.resolve() not in (resolved, *resolved.parents):
            bad.append("link %r leaves the repository" % target)
        elif not resolved.exists():
            bad.append("link %r names a missing file" % target)
    for name in MD_NAME.findall(re.sub(r"[a-z]+://\S+", "", text)):
        if name.split("/")[-1] not in md_names and not (path.parent / name).exists():
            bad.append("names %r, which is not in the repository" % name)
    # The one allowed mention: the sentence that says what "CONTRACT §N" means.
    if path.name != "interface.md" and re.search(r'\bCONTRACT\b(?! §N")', text):
        bad.append("cites CONTRACT (say doc/interface.md)")
    return bad


def test_documents_cite_only_the_repository():
    names = repo_md_names()
    problems = []
    for doc in reference_docs():
        for p in outside_references(doc, doc.read_text(), names):
            problems.append("%s: %s" % (doc.relative_to(REPO), p))
    assert not problems, "\n".join(problems)


def test_outside_references_are_caught():
    names = repo_md_names()
    readme = REPO / "README.md"
    for text in ("see [`CONTRACT.md`](../shared/CONTRACT.md)", "[x](../../etc/passwd)",
                 "[x](doc/missing.md)", "`STYLE.md` of the project",
                 "as CONTRACT §2 says"):
        assert outside_references(readme, text, names), text
    assert outside_references(readme, "[i](doc/interface.md), `HACKING.md`, "
                              "[w](https://example.com/x.md), reliability*.md", names) == []


def test_interface_reference_and_style_ship():
    """The interface the code cites as "CONTRACT §N" and the style rules are
    documents of the repository, installed with the others."""
    interface = (REPO / "doc" / "interface.md").read_text()
    for n in range(1, 12):
        assert re.search(r"^## §%d " % n, interface, re.M), "no §%d in doc/interface.md" % n
    style = (REPO / "doc" / "style.md").read_text()
    for word in ("negative errno", "## Layers", "## Tests"):
        assert word in style, word
    assert "doc/style.md" in (REPO / "HACKING.md").read_text()
    readme = (REPO / "README.md").read_text()
    assert "](doc/interface.md)" in readme


def test_man_page_files_follow_the_prefix(mcpfs_bin):
    """FILES names the configured prefix's paths (packaging/fill.sh fills them
    in from meson's prefix, bindir and datadir)."""
    import json
    bd = build_dir(mcpfs_bin)
    r = run(["meson", "introspect", "--buildoptions", str(bd)], timeout=30)
    assert r.rc == 0, r
    opts = {o["name"]: o["value"] for o in json.loads(r.out)}
    bindir = os.path.join(opts["prefix"], opts["bindir"])
    docdir = os.path.join(opts["prefix"], opts["datadir"], "doc", "mcpfs")
    want = {
        "mcpfs.1": [bindir + "/mcpfs-journal-dump", bindir + "/mcpfs-chat", docdir + "/",
                    opts["prefix"] + "/lib/systemd/user/mcpfs@.service"],
        "mcpfs-ask.1": [bindir + "/mcpfs-ask", docdir + "/examples/ask.sh"],
        "mcpfs-chat.1": [bindir + "/mcpfs-chat", docdir + "/examples/chat.sh"],
    }
    for page, paths in want.items():
        text = render_man(bd / page)
        files = text.split("\nFILES\n", 1)[1].split("\nSEE ALSO\n")[0]
        for path in paths:
            assert path in files, (page, path, files)
        assert not re.search(r"@[A-Z_]+@", files), (page, files)
