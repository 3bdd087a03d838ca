"""Access sheets: one printable page per student with everything they need to log in.

Rendered from the roster with the Jinja2 templates in `templates/sheets/` (installed as the
package `provision.templates`), in HTML (one A4 page per student, autoescaped) and Markdown,
in English or French. Sheets carry passwords, so every file is written mode 0600.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from stacks import templates_dir

from .errors import BadInput
from .roster import RosterEntry, SwarmAccess
from .state import write_private

FORMATS = ("html", "md")
INDEX = "index"

# Every label a sheet prints. Both languages must have the same keys: the templates use
# StrictUndefined, so a missing translation fails loudly instead of printing an empty line.
LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Your Docker lab access",
        "colon": ":",
        "index_title": "Access sheets",
        "classroom": "Classroom",
        "student": "Student",
        "connect": "Connect to your machine",
        "connect_hint": "Open a terminal and type:",
        "first_time": "The first time, ssh shows the machine's key fingerprint and asks whether you trust it: "
        "type yes only if it is the one below. The password stays invisible while you type it; that is normal.",
        "host_key": "Fingerprint",
        "user": "User",
        "password": "Password",
        "images": "Images already on your machine",
        "images_hint": "List them with",
        "no_images": "No image is preloaded: pull what you need.",
        "exercises": "Exercises",
        "exercises_where": "Your exercise files are in",
        "swarm": "Swarm cluster",
        "swarm_intro": "You also have an account on the Swarm nodes, with the same user but a password "
        "of its own:",
        "swarm_password": "Swarm password",
        "swarm_password_only_here": "Every student is root on these shared nodes and could see what is typed "
        "there: type only this Swarm password on them, never your own machine's.",
        "node": "Node",
        "role": "Role",
        "command": "Command",
        "role_swarm-manager": "manager",
        "role_swarm-worker": "worker",
        "swarm_manager_a": "On a manager,",
        "swarm_manager_b": "work.",
        "and": "and",
        "swarm_shared": "The whole class shares these nodes: start the names of your services "
        "and stacks with your name, for example",
        # Local hosts run in containers whose kernel may lack IPVS: no routing mesh, no VIPs.
        "swarm_local_ports": "To reach a service from outside, publish its port in host mode:",
        "expires": "End of the classroom",
        "expires_at": "This classroom ends on",
        "expires_local": "The trainer then removes the machines: copy anything you want to keep before then.",
        "expires_aws": "Your machine then powers off and is deleted: copy anything you want to keep "
        "before then.",
        "help": "Something broken?",
        "help_text": "Ask the trainer: they can reset your machine in seconds.",
    },
    "fr": {
        "title": "Vos accès au TP Docker",
        "colon": "\u00a0:",
        "index_title": "Fiches d'accès",
        "classroom": "Classe",
        "student": "Stagiaire",
        "connect": "Connexion à votre machine",
        "connect_hint": "Ouvrez un terminal et tapez\u00a0:",
        "first_time": "La première fois, ssh affiche l'empreinte de la clé de la machine et demande si vous "
        "lui faites confiance\u00a0: tapez yes seulement si c'est celle ci-dessous. Le mot de passe reste "
        "invisible pendant la saisie, c'est normal.",
        "host_key": "Empreinte",
        "user": "Utilisateur",
        "password": "Mot de passe",
        "images": "Images déjà présentes sur votre machine",
        "images_hint": "Pour les lister\u00a0:",
        "no_images": "Aucune image n'est préchargée\u00a0: téléchargez celles dont vous avez besoin.",
        "exercises": "Exercices",
        "exercises_where": "Vos fichiers d'exercices sont dans",
        "swarm": "Cluster Swarm",
        "swarm_intro": "Vous avez aussi un compte sur les nœuds Swarm, avec le même utilisateur "
        "mais un mot de passe à part\u00a0:",
        "swarm_password": "Mot de passe Swarm",
        "swarm_password_only_here": "Chaque stagiaire est root sur ces nœuds partagés et pourrait voir ce qui "
        "y est tapé\u00a0: n'y tapez que ce mot de passe Swarm, jamais celui de votre machine.",
        "node": "Nœud",
        "role": "Rôle",
        "command": "Commande",
        "role_swarm-manager": "manager",
        "role_swarm-worker": "worker",
        "swarm_manager_a": "Sur un manager,",
        "swarm_manager_b": "fonctionnent.",
        "and": "et",
        "swarm_shared": "Toute la classe partage ces nœuds\u00a0: commencez les noms de vos services "
        "et de vos stacks par votre nom, par exemple",
        "swarm_local_ports": "Pour joindre un service depuis l'extérieur, publiez son port en mode host\u00a0:",
        "expires": "Fin de la classe",
        "expires_at": "Cette classe se termine le",
        "expires_local": "Le formateur supprime ensuite les machines\u00a0: copiez avant ce que vous "
        "voulez garder.",
        "expires_aws": "Votre machine s'éteint alors et est supprimée\u00a0: copiez avant ce que vous "
        "voulez garder.",
        "help": "Un problème\u00a0?",
        "help_text": "Demandez au formateur\u00a0: il peut réinitialiser votre machine en quelques secondes.",
    },
}

# What fits one A4 page at normal size, in lines of the variable parts (image list in two
# columns, Swarm table, ssh command box). Past it, the sheet switches to a denser style.
ROOMY_LINES = 6
# Characters of monospace that fit on one line at normal size: the ssh command box, a Swarm row.
COMMAND_LINE_CHARS = 48
SWARM_LINE_CHARS = 50

# How each language writes a date and time; always shown in UTC so one sheet reads the same
# wherever it is printed.
DATE_FORMATS = {"en": "%Y-%m-%d %H:%M UTC", "fr": "%d/%m/%Y %H:%M UTC"}


@dataclass(frozen=True)
class SheetCourse:
    classroom: str  # classroom name
    images: list[str]  # image names of the course
    exercises: str | None  # "~/exercises" or None when the course has no exercises
    swarm: list[SwarmAccess]  # empty when no Swarm cluster
    expires_at: datetime | None  # when the classroom expires (aware datetime), None if unknown
    backend: str  # "local" | "aws"


def render_sheets(
    entries: list[RosterEntry], course: SheetCourse, *, formats: list[str], lang: str, out_dir: Path
) -> list[Path]:
    """Write one sheet per student and an index of all of them, per format; return the paths written."""
    formats = _check_formats(formats)
    labels = _labels(lang)
    for entry in entries:
        _check_file_stem(entry.student)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    context = {
        "course": course,
        "t": labels,
        "lang": lang,
        "expires": format_expiry(course.expires_at, lang),
        "dense": needs_dense_layout(entries, course),
    }
    written: list[Path] = []
    for fmt in formats:
        template = _environment(fmt).get_template(f"document.{fmt}.j2")
        for entry in entries:
            content = template.render(context, entries=[entry], index=False)
            written.append(_write(out_dir / f"{entry.student}.{fmt}", content))
        content = template.render(context, entries=entries, index=True)
        written.append(_write(out_dir / f"{INDEX}.{fmt}", content))
    return written


def format_expiry(when: datetime | None, lang: str) -> str | None:
    """`2026-11-27 18:00 UTC` (en) or `27/11/2026 18:00 UTC` (fr); None stays None."""
    if when is None:
        return None
    # A naive datetime is taken as UTC rather than as the local time of whoever renders.
    aware = when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
    return aware.astimezone(timezone.utc).strftime(DATE_FORMATS[lang])


def needs_dense_layout(entries: list[RosterEntry], course: SheetCourse) -> bool:
    """Whether the HTML sheet needs its smaller type to keep one student on one A4 page.

    Print CSS cannot shrink text to fit, so the lines the variable parts take are estimated here.
    Decided once for all entries, so every page of the index looks the same.
    """
    lines = (len(course.images) + 1) // 2
    longest = max((len(entry.ssh_command) for entry in entries), default=0)
    lines += 1 if longest > COMMAND_LINE_CHARS else 0
    lines += 1 if course.swarm and any(entry.swarm_password for entry in entries) else 0
    for node in course.swarm:
        widest = max((len(node.ssh_command(entry.user)) for entry in entries), default=0)
        lines += 2 if widest > SWARM_LINE_CHARS else 1
    return lines > ROOMY_LINES


def _check_formats(formats: list[str]) -> list[str]:
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown:
        raise BadInput(f"unknown sheet format {unknown[0]!r}: use html or md")
    if not formats:
        raise BadInput("no sheet format given: use html or md")
    return list(dict.fromkeys(formats))  # keep the order asked for, drop repeats


def _labels(lang: str) -> dict[str, str]:
    if lang not in LABELS:
        raise BadInput(f"unknown sheet language {lang!r}: use en or fr")
    return LABELS[lang]


def _check_file_stem(student: str) -> None:
    # The student's name becomes a file name: refuse anything that could leave out_dir or
    # overwrite the index.
    if not student or student != Path(student).name or student.startswith(".") or student == INDEX:
        raise BadInput(f"cannot write a sheet for student {student!r}: not a plain file name")


def _write(path: Path, content: str) -> Path:
    # Every `up` renders the sheets again: one that did not change is not rewritten (each write is
    # an fsync, 60 of them for 30 students).
    try:
        info = path.lstat()  # a plain file of ours, private, with this very content
        if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077 == 0 and path.read_text(encoding="utf-8") == content:
            return path
    except (OSError, UnicodeDecodeError):
        pass
    write_private(path, content)
    return path


@cache
def _environment(fmt: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(templates_dir() / "sheets")),
        autoescape=fmt == "html",  # HTML only: Markdown puts values in code spans instead
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["code"] = markdown_code
    return env


def markdown_code(value: object) -> str:
    """A Markdown code span that shows `value` verbatim, whatever backticks it holds (CommonMark)."""
    text = str(value)
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
