"""The `classroom` command line: parse options, call the core, render what it returns.

Exit codes (docs/design.md): 0 done, 1 unexpected failure, 2 bad input (nothing changed),
3 partial (some hosts not ready), 130 interrupted.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from enum import Enum
from pathlib import Path

import typer

from .errors import BadInput, ClassroomError, ExitCode, Interrupted
from .untrusted import clean, shown

app = typer.Typer(
    name="classroom",
    help="Provision a hands-on Docker classroom: one host per student, a small Swarm cluster, "
    "access sheets; reset one student in seconds; tear everything down after class.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXAMPLES = """
Examples:

  classroom -f course/classroom.yaml up --students 12

  classroom status

  classroom reset student-07

  classroom exec --hosts 'student-*' -- docker ps

  classroom down --yes
"""


class Options:
    """The global options, and the command being run. `main` makes it and hands it to click as
    the context's `obj`, so that it can still read it when an exception ends the command."""

    def __init__(self, file: Path | None = None, name: str | None = None, debug: bool = False,
                 command: str | None = None):
        self.file, self.name, self.debug = file, name, debug
        self.command = command  # for the message of an interrupted command


@app.callback(epilog=EXAMPLES)
def _global(
    ctx: typer.Context,
    file: Path | None = typer.Option(None, "-f", "--file", help="The classroom file.  [default: ./classroom.yaml]"),
    name: str | None = typer.Option(None, "--name", help="Which classroom (several can live side by side). "
                                       "[default: name in the file, else 'classroom']"),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of unexpected failures."),
) -> None:
    opts = ctx.obj if isinstance(ctx.obj, Options) else Options()
    opts.file, opts.name, opts.debug, opts.command = file, name, debug, ctx.invoked_subcommand
    ctx.obj = opts


def _room(ctx: typer.Context, *, check_paths: bool = False, progress=None, **overrides):
    from .commands import Classroom
    from .config import load_config
    from .progress import NULL_PROGRESS

    opts: Options = ctx.obj
    config = load_config(opts.file, {"--name": opts.name, **overrides}, check_paths=check_paths)
    return Classroom.open(config, NULL_PROGRESS if progress is None else progress)


def _interactive() -> bool:
    """Whether a person can answer a question (stdin is a terminal)."""
    return sys.stdin.isatty()


def _require_existing(room) -> None:
    if not room.state.exists and not room.backend.machines():
        raise BadInput(f"no classroom named {room.name!r} here: create it with `classroom up`")


# --- up --------------------------------------------------------------------------------------------
class BackendChoice(str, Enum):
    local = "local"
    aws = "aws"


# The classroom file's local.limits defaults (config.LocalLimits; tests/test_isolation.py keeps
# this text true without importing pydantic for --help).
UP_EPILOG = (
    "Local hosts: each is limited by local.limits in the classroom file; defaults: memory 2g, "
    "pids 2048, cpus 2, tmp 1g (/tmp), run 256m (/run); null lifts a limit.\n\n"
    "Students on local hosts can become root on this machine unless local.runtime names an "
    "isolating runtime such as sysbox-runc; on aws each student has a VM of their own."
)


@app.command(epilog=UP_EPILOG)
def up(
    ctx: typer.Context,
    students: int | None = typer.Option(None, "--students", "-n", help="How many students (one host each).",
                                           show_default="from the file, else 3"),
    swarm_nodes: int | None = typer.Option(None, "--swarm-nodes", help="Swarm nodes; 0 for no cluster.",
                                              show_default="from the file, else 3"),
    backend: BackendChoice | None = typer.Option(None, "--backend", help="Where the hosts run.",
                                                    show_default="from the file, else local"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before creating paid cloud resources."),
    new_secrets: bool = typer.Option(
        False, "--new-secrets",
        help="The admin key, passwords or host keys of existing hosts were lost from the state folder: "
        "make new ones and install them (new passwords void the printed sheets; a new admin key or "
        "host key needs the local backend). Without it, such a loss is refused."),
) -> None:
    """Create the classroom, or converge it: hosts, accounts, sheets.

    Re-running it changes nothing on healthy hosts; a larger --students adds hosts and touches no
    existing one; a host that was removed comes back.
    """
    from . import commands
    from .ui import RichProgress, console, out

    progress = RichProgress()
    room = _room(ctx, check_paths=True, progress=progress,
                 **{"--students": students, "--swarm-nodes": swarm_nodes,
                    "--backend": backend.value if backend else None})
    created_on = room.state.meta().backend
    if backend is not None and created_on and created_on != backend.value:
        raise BadInput(f"--backend: classroom {room.name!r} runs on {created_on}: "
                       f"run `classroom down` before creating it on {backend.value}")

    def confirm(cost_line: str) -> bool:
        if not _interactive():
            raise BadInput(f"{cost_line}; add --yes to create these paid hosts")
        return typer.confirm(f"{cost_line}. Create them?", err=True)

    with progress:
        result = commands.up(room, confirm=None if yes else confirm, new_secrets=new_secrets)
    _render_up(result, out, console)
    if result.failed:
        raise typer.Exit(ExitCode.PARTIAL)


def _render_up(result, out, console) -> None:
    from rich.table import Table

    from .ui import state_style

    table = Table(title=f"classroom {result.classroom} ({result.backend})", title_justify="left")
    for column in ("host", "role", "address", "port", "state", "note"):
        table.add_column(column)
    for host in result.hosts:
        state = "ready" if host.ok else "failed"
        note = host.error or ("created" if host.name in result.created else
                              ", ".join(host.changes) if host.changes else "unchanged")
        table.add_row(host.name, host.role, host.address, str(host.port),
                      f"[{state_style(state)}]{state}[/]", shown(note))  # notes quote hosts' output
    out.print(table)
    ready = sum(1 for h in result.hosts if h.ok)
    if result.sheets_dir:
        out.print(f"Access sheets: {result.sheets_dir / 'index.html'} (print it), Markdown beside it.")
    for renewed in result.renewed:
        console.print(f"[yellow]Made anew:[/] {renewed}.", markup=True)
    if result.expires_at:
        out.print(f"Expires: {result.expires_at:%Y-%m-%d %H:%M} UTC.")
    if not result.isolates_students:
        out.print(f"[yellow]{result.backend} hosts do not isolate students from this machine: use "
                  "local.runtime: sysbox-runc or the aws backend for strangers.[/]")
    swarm = result.swarm
    if swarm is not None and swarm.nodes:
        ok = f"{sum(1 for n in swarm.nodes if n.ok)}/{len(swarm.nodes)} node(s) ok"
        if result.swarm_mode == "per-student":
            kind = "formed" if result.swarm_formed else "blank (the students form them)"
            out.print(f"Swarm: a cluster of their own for each student, {kind}; {ok}.")
        else:
            out.print(f"Swarm: cluster {shown(str(swarm.cluster_id or '?')[:12])}, manager {swarm.manager or '?'}, "
                      f"{ok}.")
            out.print("[yellow]Swarm nodes are shared: every student is root on them (docker group), and can "
                      "see and remove the others' services. `swarm.mode: per-student` gives each their own.[/]")
        if result.routing_mesh is False:
            out.print("Swarm's routing mesh does not work on these hosts (their kernel has no IPVS): published "
                      "services need --publish mode=host or --endpoint-mode dnsrr (the sheets say so).")
    if result.failed:
        names = ", ".join(h.name for h in result.failed)
        advice = []
        if result.to_repair:
            advice.append(f"Re-run `classroom up` to repair {', '.join(result.to_repair)}.")
        if result.to_replace:
            advice.append(f"`classroom reset --hard {' '.join(result.to_replace)}` replaces what `up` cannot "
                          "repair: a host whose key is not the classroom's.")
        console.print(f"[red]{len(result.failed)} host(s) not ready: {names}[/]. " + " ".join(advice))
    else:
        out.print(f"[green]{ready} host(s) ready.[/]")


# --- status ----------------------------------------------------------------------------------------
@app.command()
def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """One row per host: role, address, port, state, and live checks (ssh, docker)."""
    from . import commands
    from .ui import out, state_style

    room = _room(ctx)
    result = commands.status(room)
    if not result.exists:
        raise BadInput(f"no classroom named {room.name!r} here: create it with `classroom up`")
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        from rich.table import Table

        table = Table(title=f"classroom {result.classroom} ({result.backend})", title_justify="left")
        check_names = sorted({name for host in result.hosts for name in host.checks})
        for column in ["host", "role", "address", "port", "state", *check_names, "detail"]:
            table.add_column(column)
        for host in result.hosts:
            marks = ["[green]ok[/]" if host.checks.get(n) else "[red]no[/]" if n in host.checks else "-"
                     for n in check_names]
            table.add_row(host.name, host.role, host.address or "-", str(host.port or "-"),
                          f"[{state_style(host.state)}]{host.state}[/]", *marks, shown(host.detail or ""))
        out.print(table)
        ready = len(result.hosts) - len(result.not_ready)
        out.print(f"{ready}/{len(result.hosts)} host(s) ready.")
        if result.swarm is not None and result.swarm.nodes:
            out.print(shown(result.swarm.summary))
    if result.not_ready:
        raise typer.Exit(ExitCode.PARTIAL)


# --- progress --------------------------------------------------------------------------------------
@app.command()
def progress(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Students x exercises: which exercise each student finished, from the course's checks.

    Each `checks/NN-name/check.sh` runs as the student on their own host (never copied there);
    exit 0 marks the exercise done. Exits 3 when some host could not be asked.
    """
    from .course_checks import progress as course_progress
    from .ui import out

    result = course_progress(_room(ctx))
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        from rich.table import Table

        marks = {True: "[green]done[/]", False: "[dim]-[/]", None: "[yellow]?[/]"}
        table = Table(title=f"classroom {result.classroom}: progress", title_justify="left")
        for column in ["student", *result.exercises, "done", "detail"]:
            table.add_column(column)
        for row in result.students:
            table.add_row(row.student, *(marks[row.done[name]] for name in result.exercises),
                          f"{sum(1 for v in row.done.values() if v)}/{len(result.exercises)}", shown(row.detail or ""))
        out.print(table)
    if result.unknown:
        raise typer.Exit(ExitCode.PARTIAL)


# --- web -------------------------------------------------------------------------------------------
@app.command()
def web(
    ctx: typer.Context,
    listen: str = typer.Option("127.0.0.1:8000", "--listen", metavar="ADDR:PORT",
                               help="Where to serve; 0.0.0.0:8000 for every interface."),
) -> None:
    """Serve the seat page, each student's sheet with a terminal in the browser, and the trainer's dashboard.

    Prints the student URL, and the trainer URL that carries the admin token (keep it to
    yourself). Ctrl-C stops it and leaves the classroom untouched.
    """
    from .ui import console, out
    from .web.server import serve

    room = _room(ctx)

    def ready(info) -> None:
        out.print(f"Students: {info.student_url}", markup=False)
        out.print(f"Trainer:  {info.trainer_url}", markup=False)
        if info.class_code:
            out.print(f"Class code (self-service seats): {info.class_code}", markup=False)
        for warning in info.warnings:
            console.print(f"[yellow]warning:[/] {shown(warning)}")
        out.print("Ctrl-C stops the server; the classroom stays as it is.", markup=False)
        sys.stdout.flush()

    serve(room, listen, ready)  # returns on Ctrl-C
    out.print(f"classroom web: stopped; classroom {room.name!r} is untouched.", markup=False)


# --- roster ----------------------------------------------------------------------------------------
class RosterFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def roster(
    ctx: typer.Context,
    fmt: RosterFormat = typer.Option(RosterFormat.table, "--format", help="Output format."),
) -> None:
    """The instructor's list: student, host, ssh command, password (and Swarm password)."""
    from .ui import out

    room = _room(ctx)
    _require_existing(room)
    entries = room.roster()
    rows = [entry.as_json() for entry in entries]
    names = seat_names(room)
    for row in rows if names else []:
        row["name"] = names.get(row["student"])
    if fmt is RosterFormat.json:
        print(json.dumps(rows, indent=2))
    elif fmt is RosterFormat.csv:
        for row in rows:  # one cell: `8080=http://host:31001 8081=...`
            row["ports"] = " ".join(f"{p['port']}={p['url']}" for p in row["ports"])
        buffer = io.StringIO()
        # One line per student: the nested `swarm` list is in the JSON only.
        writer = csv.DictWriter(buffer, fieldnames=[k for k in rows[0] if k != "swarm"] if rows else ["student"],
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        sys.stdout.write(buffer.getvalue())
    else:
        from rich.table import Table

        table = Table(title=f"classroom {room.name}", title_justify="left")
        # The Swarm password only for a classroom with Swarm nodes: it opens those nodes only.
        columns = ["student", "ssh", "password"] + (["swarm_password"] if any(e.swarm_password for e in entries)
                                                    else []) + (["name"] if names else [])
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(shown(row[column] or "") for column in columns))  # a seat's name is what a student typed
        out.print(table)


def seat_names(room) -> dict[str, str]:
    """Who took which seat on `classroom web`'s self-service page (none: {})."""
    from .web.seats import SeatBook

    return SeatBook(room.state.path).names()


# --- sheets ----------------------------------------------------------------------------------------
class SheetFormat(str, Enum):
    html = "html"
    md = "md"
    all = "all"


class Lang(str, Enum):
    en = "en"
    fr = "fr"


@app.command()
def sheets(
    ctx: typer.Context,
    fmt: SheetFormat = typer.Option(SheetFormat.all, "--format", help="html (printable A4), md, or all."),
    lang: Lang | None = typer.Option(None, "--lang", help="Language of the sheets.",
                                        show_default="from the file, else en"),
    out_dir: Path | None = typer.Option(None, "--out", help="Where to write them.",
                                           show_default="the classroom's state folder"),
) -> None:
    """(Re)render the access sheets: one printable page per student, and an index that prints all."""
    from . import commands
    from .ui import out

    room = _room(ctx)
    _require_existing(room)
    commands.require_recorded_course(room)
    formats = ("html", "md") if fmt is SheetFormat.all else (fmt.value,)
    written, folder = commands.render_sheets(room, formats=formats, lang=lang.value if lang else None,
                                             out_dir=out_dir)
    out.print(f"{len(written)} file(s) written to {folder}")
    for path in written:
        if path.name.startswith("index."):
            out.print(f"  {path}")


# --- reset ---------------------------------------------------------------------------------------
@app.command()
def reset(
    ctx: typer.Context,
    students: list[str] = typer.Argument(..., metavar="STUDENT...", help="student-12, or just 12; several at once."),
    hard: bool = typer.Option(False, "--hard", help="Replace the machine itself (same name, port and password)."),
    keep_home: bool = typer.Option(False, "--keep-home", help="Soft reset only: keep the student's home folder."),
) -> None:
    """Give a student a clean machine in seconds, touching nobody else.

    Soft (default): remove their containers, volumes, networks, extra images and Swarm
    membership, end their processes, empty their home folder and restore ~/exercises as the
    course has it, bring back every course image; same password. --keep-home: the home folder
    (~/exercises included) stays. --hard: a brand-new machine, then accounts, images and exercises again.
    """
    from . import commands
    from .ui import RichProgress, console, out

    progress = RichProgress()
    commands.check_reset_options(hard=hard, keep_home=keep_home)  # before the classroom is even looked up
    room = _room(ctx, check_paths=True, progress=progress)  # reset copies the exercises again: as `up`
    commands.resolve_targets(room, students)  # an unknown student fails before anything shows
    with progress:
        reports = commands.reset(room, students, hard=hard, keep_home=keep_home)
    for report in reports:
        if report.ok:
            out.print(shown(report.summary), style="green")
        else:
            console.print(shown(report.summary), style="red")
    if any(not r.ok for r in reports):
        raise typer.Exit(ExitCode.PARTIAL)


# --- exec / ssh ------------------------------------------------------------------------------------
@app.command(name="exec", context_settings={"allow_interspersed_args": False})
def exec_(
    ctx: typer.Context,
    command: list[str] = typer.Argument(..., metavar="-- COMMAND...", help="What to run, as root, on each host."),
    hosts: str = typer.Option("*", "--hosts", help="Which hosts: a shell pattern like 'student-0*' or 'swarm-*'."),
) -> None:
    """Run a command on every matching host in parallel, as the admin; show each host's output.

    Exits 1 when the command failed on any host.
    """
    import shlex

    from . import commands
    from .ui import out

    room = _room(ctx)
    _require_existing(room)
    results = commands.exec_on_hosts(room, " ".join(shlex.quote(c) for c in command) if len(command) > 1
                                     else command[0], hosts)
    for result in results:
        mark = "[green]ok[/]" if result.ok else f"[red]exit {result.exit_code}[/]"
        out.print(f"[bold]── {result.name}[/] {mark}")
        if result.stdout:  # the host's words: shown as text, never as terminal control
            out.print(clean(result.stdout).rstrip("\n"), markup=False, highlight=False)
        if result.stderr:
            out.print(clean(result.stderr).rstrip("\n"), markup=False, highlight=False, style="dim")
    failed = [r.name for r in results if not r.ok]
    if failed:
        raise ClassroomError(f"failed on {len(failed)} of {len(results)} host(s): {', '.join(failed)}")


@app.command(context_settings={"allow_interspersed_args": False})
def ssh(
    ctx: typer.Context,
    student: str = typer.Argument(..., metavar="STUDENT", help="student-12, 12 or swarm-1."),
    command: list[str] | None = typer.Argument(None, metavar="[-- COMMAND...]",
                                                  help="Run this instead of an interactive shell."),
) -> None:
    """Open an SSH session (as the admin) on a student's host, with OpenSSH.

    Checked against the classroom's own known_hosts (made by `up`): a host with another key is refused.
    """
    import os

    from . import commands

    room = _room(ctx)
    argv = commands.ssh_argv(room, student) + list(command or [])
    os.execvp(argv[0], argv)


# --- down ------------------------------------------------------------------------------------------
@app.command()
def down(
    ctx: typer.Context,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    clear_cache: bool = typer.Option(
        False, "--clear-cache",
        help="Also remove the course images and exercise archives saved in ~/.cache/classroom for this "
        "classroom (not those another classroom here uses). Asked when run at a terminal without --yes."),
    backend: BackendChoice | None = typer.Option(
        None, "--backend", help="Where the classroom runs, when its state folder is lost.",
        show_default="where it was created, else the file's"),
) -> None:
    """Destroy every host, volume and network of the classroom, then verify nothing is left.

    Works even when the state folder is damaged: the machines are found by their labels (tags).
    Lost the state folder? `classroom --name NAME down --backend aws` finds everything tagged
    with the classroom in AWS, lists it and deletes it.
    """
    from . import commands
    from .ui import RichProgress, console, out

    progress = RichProgress()
    room = _room(ctx, progress=progress, **{"--backend": backend.value if backend else None})
    if not yes:
        if not _interactive():
            raise BadInput(f"`down` destroys classroom {room.name!r} and its students' work: add --yes to confirm")
        found = commands.down_preview(room)
        for item in found:
            out.print(f"  {item.kind} {item.name}", markup=False, highlight=False)
        what = f"these {len(found)} resource(s) of classroom {room.name!r}" if found else f"classroom {room.name!r}"
        if not typer.confirm(f"Destroy {what} and everything on it?", err=True):
            raise BadInput("nothing was destroyed")
        room.state.salvage = True
        cached = commands.course_cache(room)
        if cached and not clear_cache:
            size = sum(path.stat().st_size for path in cached) / 1e6
            clear_cache = typer.confirm(f"Also clear its {len(cached)} cached file(s) ({size:.0f} MB)?",
                                        default=False, err=True)
    with progress:
        result = commands.down(room, clear_cache=clear_cache)
    if result.cleared:
        out.print(f"Cleared {len(result.cleared)} cached file(s) of classroom {room.name!r}.")
    if result.already_gone:
        out.print(f"classroom {room.name!r}: already gone, nothing to remove.")
        return
    kinds: dict[str, int] = {}
    for item in result.removed:
        kinds[item.kind] = kinds.get(item.kind, 0) + 1
    summary = ", ".join(f"{count} {kind}(s)" for kind, count in sorted(kinds.items())) or "nothing"
    out.print(f"Removed {summary} of classroom {room.name!r}.")
    if result.leftovers:
        for item in result.leftovers:
            console.print(f"[red]still there:[/] {item.kind} {item.name}")
        raise ClassroomError(f"{len(result.leftovers)} resource(s) of {room.name!r} are left: see above")
    out.print(f"[green]Verified: nothing of classroom {room.name!r} remains.[/]")


# --- extend ----------------------------------------------------------------------------------------
@app.command()
def extend(
    ctx: typer.Context,
    duration: str = typer.Argument(..., metavar="DURATION", help="How much longer: 30m, 2h, 1d."),
) -> None:
    """Move the classroom's expiry: the new one is max(now, current expiry) + DURATION.

    On aws every running host is told at once (it powers off, and is deleted, at its expiry);
    the sheets show the new time. A local classroom has no enforced expiry (you remove it with
    `classroom down`): only its record and sheets change.
    """
    from . import commands
    from .config import parse_duration
    from .ui import out

    try:
        delta = parse_duration(duration)
    except ValueError as exc:
        raise BadInput(f"DURATION: {exc}") from None
    room = _room(ctx)
    result = commands.extend(room, delta)
    out.print(result.summary, markup=False)
    if result.sheets_dir:
        out.print(f"Access sheets updated: {result.sheets_dir / 'index.html'}")


# --- rehearse --------------------------------------------------------------------------------------
@app.command()
def rehearse(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    timeout: int = typer.Option(900, "--timeout", min=10, help="Seconds each solution may take."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before creating a paid cloud host."),
) -> None:
    """Check the course before class: run each solutions/NN-name/solution.sh, in order, as a student.

    On a scratch host made like a student's (same image, account, images and exercises; a classroom
    of its own, NAME-rehearsal), removed afterwards, also on failure or Ctrl-C. The classroom NAME
    itself is not touched. Exits 0 when every solution passes, 3 otherwise.
    """
    from . import rehearse as rehearsal
    from .config import load_config
    from .ui import RichProgress, console, out

    opts: Options = ctx.obj
    config = load_config(opts.file, {"--name": opts.name}, check_paths=True)
    rehearsal.find_solutions(config)  # bad input fails before anything shows

    def confirm(cost_line: str) -> bool:
        if not _interactive():
            raise BadInput(f"{cost_line}; add --yes to create this paid scratch host")
        return typer.confirm(f"{cost_line}. Create it?", err=True)

    progress = RichProgress()
    with progress:
        result = rehearsal.rehearse(config, progress, confirm=None if yes else confirm, timeout=timeout)
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        _render_rehearsal(result, out, console)
    if result.leftovers:
        raise ClassroomError(f"the scratch classroom {result.scratch!r} is not fully removed "
                             f"({', '.join(result.leftovers)}): `classroom --name {result.scratch} down --yes`")
    if not result.ok:
        raise typer.Exit(ExitCode.PARTIAL)


def _render_rehearsal(result, out, console) -> None:
    from rich.table import Table

    table = Table(title=f"rehearsal of {result.classroom} (scratch host ready in {result.setup_seconds:.0f} s)",
                  title_justify="left")
    for column in ("exercise", "result", "time"):
        table.add_column(column)
    for run in result.exercises:
        mark = "[green]pass[/]" if run.ok else "[red]fail[/]"
        table.add_row(shown(run.name), mark, f"{run.seconds:.1f} s")
    out.print(table)
    for run in result.exercises:
        if not run.ok:
            code = "no exit code" if run.exit_code is None else f"exit {run.exit_code}"
            console.print(f"[red]{shown(run.name)}[/] failed ({code}); its last lines:")
            for line in run.tail:  # the scratch host's words: cleaned by the core, shown as plain text
                console.print(f"  {clean(line)}", markup=False, highlight=False, soft_wrap=True)
    passed = sum(1 for run in result.exercises if run.ok)
    style = "green" if result.ok else "red"
    out.print(f"[{style}]{passed}/{len(result.exercises)} exercise(s) pass.[/]")


# --- entry point -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """Run the CLI; the one place where exceptions become messages and exit codes."""
    import signal
    import threading

    command = typer.main.get_command(app)
    opts = Options()  # filled by the callback; read here when an exception ends the command
    on_main_thread = threading.current_thread() is threading.main_thread()  # only there can it handle signals
    previous = signal.signal(signal.SIGINT, _raise_interrupted) if on_main_thread else None
    try:
        code = command.main(args=argv, prog_name="classroom", standalone_mode=False, obj=opts)
        code = code if isinstance(code, int) else 0
        if code == ExitCode.INTERRUPTED:  # a KeyboardInterrupt Typer turned into a silent 130
            _interrupted(KeyboardInterrupt(), opts.command)
    except Interrupted as exc:
        _interrupted(exc, opts.command)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.TyperException as exc:  # click's usage errors: unknown option, 'abc' for a number
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        line = message.splitlines()[0] if message else "invalid usage (see --help)"
        _error(line.replace("Value error, ", ""))
        code = getattr(exc, "exit_code", ExitCode.BAD_INPUT) or ExitCode.BAD_INPUT
    except (typer.Abort, KeyboardInterrupt) as exc:
        _interrupted(exc, opts.command)
    except ClassroomError as exc:
        if opts.debug:
            import traceback

            traceback.print_exc()
        _error(exc.message)
        code = exc.exit_code
    except Exception as exc:  # the last resort: one line, the traceback only on request
        if opts.debug:
            import traceback

            traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _error(f"unexpected failure: {type(exc).__name__}: {first} (run with --debug for details)")
        code = ExitCode.FAILURE
    finally:
        if on_main_thread:
            signal.signal(signal.SIGINT, previous)
    sys.exit(int(code))


def _raise_interrupted(_signum, _frame) -> None:
    raise Interrupted()


def _error(message: str) -> None:
    sys.stderr.write(f"classroom: error: {clean(message)}\n")  # may quote a host: no terminal control


# What to do after Ctrl-C, by command: every changing command converges when run again.
AFTER_INTERRUPT = {"up": "run `classroom up` again, it converges",
                   "reset": "run the same `classroom reset` again, it converges",
                   "down": "run `classroom down` again, it removes what is left",
                   "rehearse": "its scratch host is removed on the way out, and another `classroom rehearse` "
                                "removes any leftover first"}


def _interrupted(exc: BaseException, command: str | None) -> None:
    """Ctrl-C: one line saying where it stopped and what to do, exit 130 at once.

    Hosts still being worked on by pool threads are left as they are (the pools stopped handing
    out work, see workers.worker_pool): waiting for them could take minutes, and the next run
    converges. So the process ends here without joining those threads.
    """
    import os
    import threading

    where = getattr(exc, "where", None)  # "during 'Provisioning 5 host(s)'", set by ui.RichProgress
    line = "classroom: interrupted" + (f" {where}" if where else "")
    if command in AFTER_INTERRUPT:
        line += f": {AFTER_INTERRUPT[command]}"
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    sys.stdout.flush()
    if threading.active_count() > 1:
        os._exit(ExitCode.INTERRUPTED)
    sys.exit(ExitCode.INTERRUPTED)


if __name__ == "__main__":
    main()
