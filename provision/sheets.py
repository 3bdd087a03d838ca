"""Access sheets: one printable page per student with everything they need to log in.

Rendered from the roster with the Jinja2 templates in `templates/sheets/` (installed as the
package `provision.templates`), in HTML (one A4 page per student, autoescaped) and Markdown,
in English or French. Sheets carry passwords, so every file is written mode 0600.
"""

from __future__ import annotations

import ipaddress
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from stacks import templates_dir

from .errors import BadInput
from .roster import PublishedPort, RosterEntry, SwarmAccess
from .state import write_private
from .timezones import class_zone

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
        "swarm_port": "and publish them on your own port only, so that nobody else's service takes it:",
        "swarm_own_intro": "You have a Swarm cluster of your own: your machine is its first node. Log into the "
        "others with the same user and password; nobody else has an account on them.",
        "swarm_blank": "Your nodes are blank Docker engines: form the cluster yourself. On your machine:",
        "swarm_blank_join": "then on each other node, with the token that command printed:",
        "address": "Address",
        "role_swarm-node": "node",
        "swarm_no_mesh": "Swarm's routing mesh does not work on these machines (their kernel has no IPVS).",
        "swarm_own_ports": "Publish in host mode; a service then answers on the nodes that run one of its tasks:",
        # Local hosts run in containers whose kernel may lack IPVS: no routing mesh, no VIPs.
        "swarm_local_ports": "These nodes have no routing mesh: publish in host mode, as above. Your service "
        "answers on the nodes that run one of its tasks (there: curl http://localhost:{port}).",
        "expires": "End of the classroom",
        "expires_at": "This classroom ends on",
        "expires_local": "The trainer then removes the machines: copy anything you want to keep before then.",
        "expires_aws": "Your machine then powers off and is deleted: copy anything you want to keep "
        "before then.",
        "ports": "Open what you publish",
        "ports_hint": "Publish one of these ports on your machine (for example docker run -p {port}:80 ...), "
        "then open its address in your browser:",
        "your_port": "your port",
        "your_ports": "your ports",
        "ports_loopback": "These addresses are the trainer's own machine (a loopback address): they work only "
        "there. Trainer: set local.public_host to this machine's address on the class network.",
        "help": "Something broken?",
        "help_text": "Ask the trainer: they can reset your machine in seconds.",
        "reset_keeps": "A reset removes your containers, volumes, networks and the images you built or "
        "pulled, and brings back every image of the course (even if you deleted them all). It empties your "
        "home folder",
        "reset_keeps_exercises": ", except ~/exercises, which comes back as the course gave it",
        "reset_keeps_home": ": copy your own files elsewhere first, or ask the trainer to keep your home folder "
        "(reset --keep-home).",
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
        "swarm_port": "et publiez-les sur votre propre port seulement, pour qu'aucun autre service ne le "
        "prenne\u00a0:",
        "swarm_local_ports": "Ces nœuds n'ont pas de routing mesh\u00a0: publiez en mode host, comme ci-dessus. "
        "Votre service répond sur les nœuds qui exécutent l'une de ses tâches (là\u00a0: curl "
        "http://localhost:{port}).",
        "swarm_own_intro": "Vous avez un cluster Swarm à vous\u00a0: votre machine en est le premier nœud. "
        "Connectez-vous aux autres avec le même utilisateur et le même mot de passe\u00a0; personne d'autre "
        "n'y a de compte.",
        "swarm_blank": "Vos nœuds sont des moteurs Docker vierges\u00a0: formez le cluster vous-même. Sur votre "
        "machine\u00a0:",
        "swarm_blank_join": "puis sur chacun des autres nœuds, avec le jeton affiché par cette commande\u00a0:",
        "address": "Adresse",
        "role_swarm-node": "nœud",
        "swarm_no_mesh": "Le routing mesh de Swarm ne fonctionne pas sur ces machines (leur noyau n'a pas "
        "IPVS).",
        "swarm_own_ports": "Publiez en mode host\u00a0; un service répond alors sur les nœuds qui exécutent l'une "
        "de ses tâches\u00a0:",
        "expires": "Fin de la classe",
        "expires_at": "Cette classe se termine le",
        "expires_local": "Le formateur supprime ensuite les machines\u00a0: copiez avant ce que vous "
        "voulez garder.",
        "expires_aws": "Votre machine s'éteint alors et est supprimée\u00a0: copiez avant ce que vous "
        "voulez garder.",
        "ports": "Ouvrir ce que vous publiez",
        "ports_hint": "Publiez l'un de ces ports sur votre machine (par exemple docker run -p {port}:80 ...), "
        "puis ouvrez son adresse dans votre navigateur\u00a0:",
        "your_port": "votre port",
        "your_ports": "vos ports",
        "ports_loopback": "Ces adresses désignent la machine du formateur (adresse de bouclage)\u00a0: elles ne "
        "marchent que sur celle-ci. Formateur\u00a0: indiquez dans local.public_host l'adresse de cette "
        "machine sur le réseau de la classe.",
        "help": "Un problème\u00a0?",
        "help_text": "Demandez au formateur\u00a0: il peut réinitialiser votre machine en quelques secondes.",
        "reset_keeps": "Une réinitialisation supprime vos conteneurs, volumes, réseaux et les images que vous "
        "avez construites ou téléchargées, et remet toutes les images du cours (même si vous les avez toutes "
        "supprimées). Elle vide votre dossier personnel",
        "reset_keeps_exercises": ", sauf ~/exercises, remis tel que le cours le donne",
        "reset_keeps_home": "\u00a0: copiez d'abord vos fichiers ailleurs, ou demandez au formateur de garder "
        "votre dossier personnel (reset --keep-home).",
    },
}

# What fits one A4 page at normal size, in lines of the variable parts (image list in two
# columns, Swarm table, ssh command box). Past it, the sheet switches to a denser style.
ROOMY_LINES = 6
# Characters of monospace that fit on one line at normal size: the ssh command box, a Swarm row.
COMMAND_LINE_CHARS = 48
SWARM_LINE_CHARS = 50
PORT_COLUMNS = 1  # runs of published ports per line of the HTML sheet

# How each language writes a date and time, in the class's time zone (`timezone:`, else the
# machine's), named after the time: the sheet is read where the class is.
DATE_FORMATS = {"en": "%Y-%m-%d %H:%M", "fr": "%d/%m/%Y %H:%M"}
# Services on the shared Swarm nodes are published on 30000 + the student's number: inside
# Swarm's own published range (opened on aws), and never the same for two students.
SWARM_PORT_BASE = 30000


@dataclass(frozen=True)
class SheetCourse:
    classroom: str  # classroom name
    images: list[str]  # image names of the course
    exercises: str | None  # "~/exercises" or None when the course has no exercises
    swarm: list[SwarmAccess]  # the shared nodes; empty when no shared cluster (a student's own: entry.swarm)
    expires_at: datetime | None  # when the classroom expires (aware datetime), None if unknown
    backend: str  # "local" | "aws"
    timezone: str | None = None  # the class's zone (Europe/Paris); None: this machine's
    swarm_formed: bool = True  # false: blank nodes, the sheet says how to form the cluster
    routing_mesh: bool | None = None  # false: no IPVS on the hosts (publish in host mode); None: unknown

    def nodes_of(self, entry: RosterEntry) -> list[SwarmAccess]:
        """The Swarm nodes this student's sheet lists: the shared ones, else their own."""
        return list(self.swarm) or list(entry.swarm)

    @property
    def no_routing_mesh(self) -> bool:
        """Whether to tell students to publish in host mode: known, else assumed on local hosts."""
        return self.routing_mesh is False or (self.routing_mesh is None and self.backend == "local")


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
        "expires": format_expiry(course.expires_at, lang, course.timezone),
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


def format_expiry(when: datetime | None, lang: str, zone: str | None = None) -> str | None:
    """`2026-11-27 19:00 CET` (en) or `27/11/2026 19:00 CET` (fr) in `zone` (None: this machine's
    zone); a zone without an abbreviation is named in full (`18:00 America/Sao_Paulo`). None stays None."""
    if when is None:
        return None
    # A naive datetime is taken as UTC rather than as the local time of whoever renders.
    aware = when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
    tz = class_zone(zone)
    local = aware.astimezone(tz)
    abbreviation = local.strftime("%Z")
    named = abbreviation if abbreviation and abbreviation[0].isalpha() else tz.key
    return f"{local.strftime(DATE_FORMATS[lang])} {named}"


def swarm_port(student: str) -> int:
    """student-07 -> 30007: the port a student publishes their Swarm services on."""
    return SWARM_PORT_BASE + int(student.rsplit("-", 1)[1])


@dataclass(frozen=True)
class PortRun:
    """Consecutive course ports on consecutive public ports, one line of the HTML sheet:
    `8000–8010 → http://host:3203–3213` (a single port: `last` is None)."""

    first: PublishedPort
    last: PublishedPort | None = None

    @property
    def last_public(self) -> str:
        return "" if self.last is None else self.last.url.rsplit(":", 1)[1]


def example_port(ports: tuple[PublishedPort, ...]) -> int:
    """The port the sheet's `docker run -p PORT:80` example uses: one of the student's own."""
    numbers = [published.port for published in ports]
    return next((port for port in (8080, 8000) if port in numbers), numbers[0] if numbers else 8080)


def port_runs(ports: tuple[PublishedPort, ...]) -> list[PortRun]:
    """Group a student's ports into runs, so the default 13 ports take 3 lines, not 13."""
    runs: list[list[PublishedPort]] = []
    for published in ports:
        if runs and published.port == runs[-1][-1].port + 1 and _public(published) == _public(runs[-1][-1]) + 1:
            runs[-1].append(published)
        else:
            runs.append([published])
    return [PortRun(run[0], run[-1] if len(run) > 1 else None) for run in runs]


def _public(published: PublishedPort) -> int:
    return int(published.url.rsplit(":", 1)[1])


def is_loopback(address: str) -> bool:
    """Whether students cannot reach `address` from their own laptops (127.0.0.1, ::1, localhost)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def needs_dense_layout(entries: list[RosterEntry], course: SheetCourse) -> bool:
    """Whether the HTML sheet needs its smaller type to keep one student on one A4 page.

    Print CSS cannot shrink text to fit, so the lines the variable parts take are estimated here.
    Decided once for all entries, so every page of the index looks the same.
    """
    lines = (len(course.images) + 1) // 2
    ports = max((len(port_runs(entry.ports)) for entry in entries), default=0)
    lines += (ports + PORT_COLUMNS - 1) // PORT_COLUMNS + (1 if ports else 0)
    longest = max((len(entry.ssh_command) for entry in entries), default=0)
    lines += 1 if longest > COMMAND_LINE_CHARS else 0
    lines += 1 if course.swarm and any(entry.swarm_password for entry in entries) else 0
    lines += 2 if not course.swarm_formed and any(entry.swarm for entry in entries) else 0
    for row in range(max((len(course.nodes_of(entry)) for entry in entries), default=0)):
        widest = max((len(nodes[row].ssh_command(entry.user)) for entry in entries
                      if len(nodes := course.nodes_of(entry)) > row), default=0)
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
    env.filters["swarm_port"] = swarm_port
    env.filters["port_runs"] = port_runs
    env.filters["example_port"] = example_port
    env.tests["loopback"] = is_loopback
    return env


def markdown_code(value: object) -> str:
    """A Markdown code span that shows `value` verbatim, whatever backticks it holds (CommonMark)."""
    text = str(value)
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
