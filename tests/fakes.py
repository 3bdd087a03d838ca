"""Stand-ins shared by the unit tests: import them from here, never from another test module.

- `FakeBackend`: an in-memory backend (the Backend interface, no engine, no cloud).
- `FakeHostWork`: what the commands do on hosts (provisioning, checks, wipes), without SSH.

Together they run `up`, `status`, `reset` and `down` in milliseconds, so that the orchestration
in provision/commands.py can be tested on its own: which hosts are made, what converges, how a
failed host becomes exit 3, what Ctrl-C does.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from provision.backends.base import Backend, EnsureResult
from provision.model import HostSpec, Leftover, Machine, MachineState, Role
from provision.progress import NULL_PROGRESS, Progress
from provision.state import ClassroomState
from provision.swarm import SwarmReport, SwarmStatus

ALL_OK = {"admin": True, "ssh": True, "docker": True}


class FakeBackend(Backend):
    """Machines in a dict; each new one gets its host key in `state`, as a real backend's does.
    `refuse`: hosts `ensure` cannot make (name -> reason, as a cloud's
    capacity error); `interrupt`: names of methods that raise `interruption` (Ctrl-C while the
    backend works); `stuck`: leftovers `destroy` cannot remove. Every call is in `calls`."""

    can_repair_access = True

    def __init__(self, state: ClassroomState, name: str = "local", *, refuse: dict[str, str] | None = None,
                 interrupt: set[str] | None = None, interruption: type[BaseException] = KeyboardInterrupt,
                 stuck: list[Leftover] | None = None):
        self.state = state
        self.interruption = interruption  # errors.Interrupted: what the CLI's SIGINT handler raises
        self.name = name
        self.hosts: dict[str, Machine] = {}
        self.refuse = dict(refuse or {})
        self.interrupt = set(interrupt or ())
        self.stuck = list(stuck or [])
        self.calls: list[tuple[str, tuple[str, ...]]] = []  # (method, host names)
        self.created: list[str] = []  # every host made, in order (a replaced one again)

    def _called(self, method: str, names: tuple[str, ...] = ()) -> None:
        self.calls.append((method, names))
        if method in self.interrupt:
            raise self.interruption()

    def _new_machine(self, spec: HostSpec) -> Machine:
        port = (2200 if spec.role == Role.STUDENT else 2300) + spec.index
        self.state.host_key(spec.name)
        self.created.append(spec.name)
        return Machine(name=spec.name, role=spec.role, student=spec.student, state=MachineState.RUNNING,
                       ssh_host="127.0.0.1", ssh_port=port, public_host="127.0.0.1", public_port=port,
                       machine_id=f"fake-{spec.name}-{len(self.created)}")

    # --- the Backend interface ---------------------------------------------------------------------
    def preflight(self, hosts: list[HostSpec]) -> None:
        self._called("preflight", tuple(h.name for h in hosts))

    def ensure(self, hosts: list[HostSpec], admin_public_key: str, progress: Progress = NULL_PROGRESS,
               found: object | None = None) -> EnsureResult:
        self._called("ensure", tuple(h.name for h in hosts))
        failures = {}
        for spec in hosts:
            machine = self.hosts.get(spec.name)
            if spec.name in self.refuse:
                failures[spec.name] = self.refuse[spec.name]
            elif machine is None or machine.state == MachineState.CREATED:
                self.hosts[spec.name] = self._new_machine(spec)
            elif not machine.running:
                self.hosts[spec.name] = replace(machine, state=MachineState.RUNNING)
        return EnsureResult([self.hosts[h.name] for h in hosts if h.name in self.hosts], failures)

    def machines(self) -> list[Machine]:
        self._called("machines")
        return list(self.hosts.values())

    def replace(self, host: HostSpec, admin_public_key: str, progress: Progress = NULL_PROGRESS) -> Machine:
        self._called("replace", (host.name,))
        self.hosts[host.name] = self._new_machine(host)
        return self.hosts[host.name]

    def destroy(self, progress: Progress = NULL_PROGRESS) -> list[Leftover]:
        self._called("destroy")
        removed = [Leftover("container", name) for name in self.hosts]
        self.hosts.clear()
        return removed

    def leftovers(self) -> list[Leftover]:
        self._called("leftovers")
        return [Leftover("container", name) for name in self.hosts] + list(self.stuck)

    # --- what a test does behind the tool's back ---------------------------------------------------------
    def stop(self, name: str) -> None:
        self.hosts[name] = replace(self.hosts[name], state=MachineState.EXITED)

    def remove(self, name: str) -> None:
        del self.hosts[name]


@dataclass
class FakeHostWork:
    """Hosts that converge at once. `broken`: host -> the error its provisioning raises;
    `unhealthy`: hosts whose checks fail; `interrupt_on`: the host whose provisioning gets Ctrl-C.
    `provisioned` and `wiped` list the hosts worked on, in order."""

    broken: dict[str, str] = field(default_factory=dict)
    unhealthy: set[str] = field(default_factory=set)
    interrupt_on: str | None = None
    provisioned: list[str] = field(default_factory=list)
    wiped: list[str] = field(default_factory=list)
    _ready: set[str] = field(default_factory=set)  # machine IDs already converged

    def provision(self, machine, hashes, access, course, backend, *, fresh_exercises=False):
        self.provisioned.append(machine.name)
        if machine.name == self.interrupt_on:
            raise KeyboardInterrupt
        if machine.name in self.broken:
            raise RuntimeError(self.broken[machine.name])
        if machine.machine_id in self._ready:
            return []
        self._ready.add(machine.machine_id)
        return [f"account {name}" for name in sorted(hashes) if machine.student in (None, name)]

    def wipe(self, machine, access, backend, student):
        self.wiped.append(machine.name)
        return []

    def check(self, machine, access, passwords, hashes, *, images, exercises, repairable=True):
        if machine.name in self.unhealthy:
            return {**ALL_OK, "docker": False}, "docker does not answer"
        return dict(ALL_OK), None

    def check_all(self, room, machines, passwords, on_done=None, *, password_login=False, swarm_passwords=None):
        results = {}
        for machine in machines:
            results[machine.name] = self.check(machine, None, passwords, {}, images=False, exercises=False)
            if on_done:
                on_done(machine)
        return results

    def converge_swarm(self, machines, access, managers, progress):
        return SwarmReport(cluster_id=None, manager=None, nodes=[])

    def release_nodes(self, machines, access, names, progress):
        return []

    def swarm_status(self, nodes, access):
        return SwarmStatus(nodes=[])
