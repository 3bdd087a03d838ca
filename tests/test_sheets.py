"""Access sheets: each student's page has their own access and nobody else's, in both languages."""

from __future__ import annotations

import html
import re
import stat
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from markupsafe import escape

from provision.errors import BadInput, ExitCode
from provision.roster import PublishedPort, RosterEntry, SwarmAccess
from provision.sheets import (
    LABELS,
    SheetCourse,
    format_expiry,
    markdown_code,
    needs_dense_layout,
    render_sheets,
)

PASSWORDS = ["maple-river-cloud-4821", "otter-lamp-pixel-0093", "cedar-kite-honey-7310"]
EXPIRES = datetime(2026, 11, 27, 18, 0, tzinfo=timezone.utc)
SWARM = [
    SwarmAccess("swarm-1", "swarm-manager", "203.0.113.10", 22),
    SwarmAccess("swarm-2", "swarm-worker", "203.0.113.11", 22),
]


def make_entries() -> list[RosterEntry]:
    return [
        RosterEntry(f"student-0{i}", f"student-0{i}", "127.0.0.1", 2200 + i, f"student-0{i}", password)
        for i, password in enumerate(PASSWORDS, start=1)
    ]


def make_course(**changes) -> SheetCourse:
    values = {
        "classroom": "docker-intro",
        "images": ["alpine:3.4", "nginx:1.10-alpine", "docker-intro/vote:1"],
        "exercises": "~/exercises",
        "swarm": [],
        "expires_at": EXPIRES,
        "backend": "local",
        "timezone": "UTC",  # not the machine's: the expected times must not depend on where tests run
    }
    values.update(changes)
    return SheetCourse(**values)


def render(tmp_path: Path, *, lang="en", formats=("html", "md"), course=None, entries=None) -> list[Path]:
    return render_sheets(
        make_entries() if entries is None else entries,
        course or make_course(),
        formats=list(formats),
        lang=lang,
        out_dir=tmp_path / "sheets",
    )


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_writes_one_sheet_per_student_and_an_index_per_format(tmp_path, lang):
    paths = render(tmp_path, lang=lang)
    names = [p.name for p in paths]
    assert names == [
        "student-01.html", "student-02.html", "student-03.html", "index.html",
        "student-01.md", "student-02.md", "student-03.md", "index.md",
    ]
    assert all(p.parent == tmp_path / "sheets" and p.is_file() for p in paths)


@pytest.mark.parametrize("lang", ["en", "fr"])
@pytest.mark.parametrize("fmt", ["html", "md"])
def test_each_sheet_has_its_own_access_and_no_one_elses(tmp_path, lang, fmt):
    render(tmp_path, lang=lang, formats=[fmt])
    entries = make_entries()
    for entry in entries:
        text = (tmp_path / "sheets" / f"{entry.student}.{fmt}").read_text()
        assert entry.ssh_command in text
        assert entry.password in text
        assert entry.student in text
        for other in entries:
            if other is not entry:
                assert other.password not in text
                assert other.ssh_command not in text


@pytest.mark.parametrize("fmt", ["html", "md"])
def test_sheet_lists_images_exercises_expiry_and_help(tmp_path, fmt):
    render(tmp_path, formats=[fmt])
    text = (tmp_path / "sheets" / f"student-02.{fmt}").read_text()
    for image in ["alpine:3.4", "nginx:1.10-alpine", "docker-intro/vote:1"]:
        assert image in text
    assert "~/exercises" in text
    assert "2026-11-27 18:00 UTC" in text
    assert "reset your machine in seconds" in text


def test_no_exercises_and_no_expiry_leave_their_sections_out(tmp_path):
    render(tmp_path, course=make_course(exercises=None, expires_at=None))
    for fmt in ("html", "md"):
        text = (tmp_path / "sheets" / f"student-01.{fmt}").read_text()
        assert "~/exercises" not in text
        assert LABELS["en"]["exercises"] not in text
        assert LABELS["en"]["expires_at"] not in text
        assert " UTC" not in text


def test_html_autoescapes_classroom_and_image_names(tmp_path):
    course = make_course(classroom="<script>alert(1)</script>", images=["<script>evil</script>:1"])
    render(tmp_path, formats=["html"], course=course)
    for name in ("student-01.html", "index.html"):
        text = (tmp_path / "sheets" / name).read_text()
        assert "<script>" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert "&lt;script&gt;evil&lt;/script&gt;:1" in text


def test_html_is_printable_a4_and_self_contained(tmp_path):
    render(tmp_path, formats=["html"])
    text = (tmp_path / "sheets" / "student-01.html").read_text()
    assert "@page { size: A4; margin: 15mm; }" in text
    assert "<style>" in text
    # No external assets: the sheet must print the same on an offline laptop.
    for marker in ("<link", "<script", "src=", "url(", "@import", "http://", "https://"):
        assert marker not in text


def test_index_html_has_every_student_one_per_page(tmp_path):
    render(tmp_path, formats=["html"])
    text = (tmp_path / "sheets" / "index.html").read_text()
    entries = make_entries()
    for entry in entries:
        assert entry.ssh_command in text
        assert entry.password in text
    assert text.count('<article class="sheet">') == len(entries)
    assert "page-break-after: always" in text
    assert "break-after: page" in text
    # Students appear in roster order.
    positions = [text.index(entry.password) for entry in entries]
    assert positions == sorted(positions)


def test_index_md_has_every_student_separated_by_rules(tmp_path):
    render(tmp_path, formats=["md"])
    text = (tmp_path / "sheets" / "index.md").read_text()
    for entry in make_entries():
        assert entry.ssh_command in text
        assert entry.password in text
    # A blank line before `---` keeps it a rule rather than a setext heading underline.
    assert text.count("\n\n---\n\n") == len(PASSWORDS) - 1


def test_every_file_is_mode_0600_and_out_dir_is_created(tmp_path):
    out_dir = tmp_path / "deep" / "er" / "sheets"
    paths = render_sheets(make_entries(), make_course(), formats=["html", "md"], lang="fr", out_dir=out_dir)
    assert out_dir.is_dir()
    assert sorted(paths) == sorted(out_dir.iterdir())
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_rendering_again_overwrites_the_sheets(tmp_path):
    render(tmp_path, formats=["md"])
    changed = [RosterEntry("student-01", "student-01", "127.0.0.1", 2201, "student-01", "new-pass-word-0001")]
    render(tmp_path, formats=["md"], entries=changed)
    text = (tmp_path / "sheets" / "student-01.md").read_text()
    assert "new-pass-word-0001" in text
    assert PASSWORDS[0] not in text


@pytest.mark.parametrize("fmt", ["html", "md"])
def test_swarm_section_only_when_there_is_a_swarm(tmp_path, fmt):
    render(tmp_path / "none", formats=[fmt])
    without = (tmp_path / "none" / "sheets" / f"student-02.{fmt}").read_text()
    assert LABELS["en"]["swarm"] not in without
    assert "docker node ls" not in without

    render(tmp_path / "swarm", formats=[fmt], course=make_course(swarm=SWARM))
    text = (tmp_path / "swarm" / "sheets" / f"student-02.{fmt}").read_text()
    assert LABELS["en"]["swarm"] in text
    assert "ssh student-02@203.0.113.10" in text
    assert "ssh student-02@203.0.113.11" in text
    assert "ssh student-01@203.0.113.10" not in text
    for command in ("docker node ls", "docker service create", "docker stack deploy"):
        assert command in text
    assert "manager" in text and "worker" in text


@pytest.mark.parametrize("lang", ["en", "fr"])
@pytest.mark.parametrize("fmt", ["html", "md"])
def test_swarm_section_gives_the_swarm_password_and_says_to_type_it_only_there(tmp_path, lang, fmt):
    # Every student is root on the shared nodes: a password typed there must not open their own host.
    swarm_passwords = ["swarm-pass-word-0001", "swarm-pass-word-0002", "swarm-pass-word-0003"]
    entries = [RosterEntry(e.student, e.host, e.address, e.port, e.user, e.password, swarm_password=p)
               for e, p in zip(make_entries(), swarm_passwords, strict=True)]
    render(tmp_path, lang=lang, formats=[fmt], course=make_course(swarm=SWARM), entries=entries)
    text = (tmp_path / "sheets" / f"student-02.{fmt}").read_text()
    swarm_section = text[text.index(LABELS[lang]["swarm"]):]
    assert swarm_passwords[1] in swarm_section and PASSWORDS[1] not in swarm_section
    assert swarm_passwords[0] not in text and swarm_passwords[2] not in text
    assert LABELS[lang]["swarm_password"] in swarm_section
    only_here = LABELS[lang]["swarm_password_only_here"]
    assert (str(escape(only_here)) if fmt == "html" else only_here) in swarm_section  # as Jinja escapes it


def test_swarm_commands_keep_a_non_default_port(tmp_path):
    swarm = [SwarmAccess("swarm-1", "swarm-manager", "127.0.0.1", 2301)]
    render(tmp_path, formats=["md"], course=make_course(swarm=swarm))
    text = (tmp_path / "sheets" / "student-03.md").read_text()
    assert "ssh -p 2301 student-03@127.0.0.1" in text


@pytest.mark.parametrize("fmt", ["html", "md"])
def test_french_sheets_are_in_french(tmp_path, fmt):
    render(tmp_path, lang="fr", formats=[fmt], course=make_course(swarm=SWARM))
    text = (tmp_path / "sheets" / f"student-01.{fmt}").read_text()
    for label in ("Mot de passe", "Utilisateur", "Exercices", "Cluster Swarm", "Un problème",
                  "Fin de la classe", "réinitialiser votre machine"):
        assert label in text, label
    assert "27/11/2026 18:00 UTC" in text
    for english in ("Password", "User", "Something broken", "2026-11-27"):
        assert english not in text, english
    if fmt == "html":
        assert '<html lang="fr">' in text


def test_both_languages_have_the_same_labels():
    assert LABELS["en"].keys() == LABELS["fr"].keys()
    assert all(value.strip() for labels in LABELS.values() for value in labels.values())


def test_aws_sheets_say_the_machine_is_deleted(tmp_path):
    render(tmp_path, formats=["md"], course=make_course(backend="aws"))
    text = (tmp_path / "sheets" / "student-01.md").read_text()
    assert LABELS["en"]["expires_aws"] in text


def test_expiry_is_shown_in_the_class_time_zone():
    plus_one = timezone(timedelta(hours=1))
    assert format_expiry(datetime(2026, 11, 27, 19, 0, tzinfo=plus_one), "en", "UTC") == "2026-11-27 18:00 UTC"
    assert format_expiry(datetime(2026, 11, 27, 19, 0, tzinfo=plus_one), "fr", "UTC") == "27/11/2026 18:00 UTC"
    # Paris is UTC+1 in November, UTC+2 in July; the sheet says which.
    assert format_expiry(datetime(2026, 11, 27, 17, 0, tzinfo=timezone.utc), "fr", "Europe/Paris") == \
        "27/11/2026 18:00 CET"
    assert format_expiry(datetime(2026, 7, 1, 17, 0, tzinfo=timezone.utc), "en", "Europe/Paris") == \
        "2026-07-01 19:00 CEST"
    # A zone whose abbreviation is only an offset is named in full.
    assert format_expiry(datetime(2026, 11, 27, 17, 0, tzinfo=timezone.utc), "en", "America/Sao_Paulo") == \
        "2026-11-27 14:00 America/Sao_Paulo"
    assert format_expiry(None, "fr") is None


def test_sheets_render_times_in_the_class_time_zone(tmp_path):
    render(tmp_path, formats=["md"], course=make_course(timezone="Asia/Tokyo"))
    text = (tmp_path / "sheets" / "student-01.md").read_text()
    assert "2026-11-28 03:00 JST" in text and "UTC" not in text


@pytest.mark.parametrize("fmt", ["html", "md"])
def test_sheet_lists_each_published_port_with_its_url(tmp_path, fmt):
    entries = [replace(entry, address="192.0.2.7", ports=(
        PublishedPort(80, f"http://192.0.2.7:{31000 + 2 * i}"), PublishedPort(8080, f"http://192.0.2.7:{31001 + 2 * i}")))
        for i, entry in enumerate(make_entries())]
    render(tmp_path, formats=[fmt], entries=entries)
    text = as_read(tmp_path / "sheets" / f"student-02.{fmt}")
    assert LABELS["en"]["ports"] in text
    for port, url in ((80, "http://192.0.2.7:31002"), (8080, "http://192.0.2.7:31003")):
        assert re.search(rf"your port\W+{port}\W+→\W+{re.escape(url)}", text), text
    assert "http://192.0.2.7:31000" not in text  # student-01's
    assert "docker run -p 8080:80" in text  # the example is one of the student's own ports
    assert LABELS["en"]["ports_loopback"] not in text


@pytest.mark.parametrize("fmt", ["html", "md"])
def test_sheet_warns_when_the_address_is_loopback(tmp_path, fmt):
    entries = [replace(entry, ports=(PublishedPort(8080, "http://127.0.0.1:31001"),)) for entry in make_entries()]
    render(tmp_path, formats=[fmt], entries=entries)
    assert LABELS["en"]["ports_loopback"] in as_read(tmp_path / "sheets" / f"student-01.{fmt}")


def as_read(path: Path) -> str:
    """A sheet's words as a reader sees them: no HTML tags or entities, no Markdown backticks."""
    text = html.unescape(re.sub(r"<[^>]+>", "", path.read_text())).replace("`", "")
    return " ".join(text.split())


@pytest.mark.parametrize("fmt", ["html", "md"])
def test_sheet_says_what_a_reset_keeps_and_that_it_brings_images_back(tmp_path, fmt):
    render(tmp_path, formats=[fmt])
    text = as_read(tmp_path / "sheets" / f"student-01.{fmt}")
    for words in ("brings back every image of the course (even if you deleted them all)", "empties your home folder",
                  "except ~/exercises", "reset --keep-home"):
        assert words in text, words


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lang": "de"}, "unknown sheet language 'de': use en or fr"),
        ({"formats": ["pdf"]}, "unknown sheet format 'pdf': use html or md"),
        ({"formats": []}, "no sheet format given: use html or md"),
    ],
)
def test_bad_input_is_refused_before_writing(tmp_path, kwargs, message):
    options = {"formats": ["html"], "lang": "en", "out_dir": tmp_path / "sheets", **kwargs}
    with pytest.raises(BadInput) as caught:
        render_sheets(make_entries(), make_course(), **options)
    assert str(caught.value) == message
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "sheets").exists()


def test_a_student_name_cannot_escape_the_output_folder(tmp_path):
    entries = [RosterEntry("../evil", "student-01", "127.0.0.1", 2201, "student-01", PASSWORDS[0])]
    with pytest.raises(BadInput):
        render(tmp_path, entries=entries)
    assert not (tmp_path / "evil.html").exists()


def test_markdown_code_spans_survive_backticks():
    assert markdown_code("plain") == "`plain`"
    assert markdown_code("a`b") == "``a`b``"
    assert markdown_code("`x`") == "`` `x` ``"


def test_many_swarm_nodes_switch_to_the_dense_layout(tmp_path):
    assert not needs_dense_layout(make_entries(), make_course(swarm=SWARM))
    nine = [SwarmAccess(f"swarm-{k}", "swarm-worker", "203.0.113.10", 2300 + k) for k in range(1, 10)]
    assert needs_dense_layout(make_entries(), make_course(swarm=nine))
    render(tmp_path, formats=["html"], course=make_course(swarm=nine))
    text = (tmp_path / "sheets" / "index.html").read_text()
    assert text.count('<article class="sheet dense">') == len(PASSWORDS)


@pytest.mark.parametrize("fmt", ["html", "md"])
def test_swarm_sheets_give_each_student_their_own_port_and_name(tmp_path, fmt):
    # No routing mesh on local hosts (no IPVS in their kernel): host-mode publishing works. Two
    # students must never be told the same host-mode port: one of them would stay Pending.
    render(tmp_path / "local", formats=[fmt], course=make_course(swarm=SWARM, backend="local"))
    first, second = ((tmp_path / "local" / "sheets" / f"student-0{i}.{fmt}").read_text() for i in (1, 2))
    assert "--publish mode=host,target=80,published=30001" in first and "student-01-web" in first
    assert "--publish mode=host,target=80,published=30002" in second and "student-02-web" in second
    assert "published=8080" not in first + second
    assert "curl http://localhost:30002" in second
    render(tmp_path / "aws", formats=[fmt], course=make_course(swarm=SWARM, backend="aws"))
    text = (tmp_path / "aws" / "sheets" / f"student-01.{fmt}").read_text()
    assert "mode=host" not in text and "--publish published=30001,target=80" in text


def test_consecutive_ports_share_one_line_of_the_printed_sheet(tmp_path):
    from provision.sheets import port_runs

    ports = (PublishedPort(80, "http://h:3201"), PublishedPort(5000, "http://h:3202"),
             *(PublishedPort(8000 + k, f"http://h:{3203 + k}") for k in range(11)))
    runs = port_runs(ports)
    assert [(r.first.port, r.last.port if r.last else None, r.last_public) for r in runs] == [
        (80, None, ""), (5000, None, ""), (8000, 8010, "3213")]
    entries = [replace(entry, ports=ports) for entry in make_entries()]
    render(tmp_path, formats=["html", "md"], entries=entries)
    assert "your ports 8000–8010 → http://h:3203–3213" in as_read(tmp_path / "sheets" / "student-01.html")
    assert "your port 8005 → http://h:3208" in as_read(tmp_path / "sheets" / "student-01.md")  # each port
    assert "docker run -p 8000:80" in as_read(tmp_path / "sheets" / "student-01.md")  # no 8080 in this course
