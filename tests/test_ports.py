"""Issue 12, pure parts: each student's public ports, this machine's address from its routing
table, the class's time zone, and who may sudo. No engine, no network: milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.backends.local import published_ports
from provision.config import ClassroomConfig, parse_ports
from provision.hostaddr import default_route_address, default_route_interface, interface_address
from provision.hosttools import sudo_arguments
from provision.model import Machine, MachineState, Role
from provision.ports import PUBLISHED_OFFSET, course_ports, local_port_map, local_ports_problem, url
from provision.roster import published_ports as urls_of
from provision.timezones import check_zone, machine_zone

DEFAULT = parse_ports([80, 5000, "8000-8010"])


# --- public ports on the local backend -------------------------------------------------------------
def test_each_student_gets_a_block_of_their_own_clear_of_every_ssh_port():
    base, students = 2200, 30
    blocks = [local_port_map(base, DEFAULT, index) for index in range(1, students + 1)]
    assert blocks[0][:3] == [(80, 3201), (5000, 3202), (8000, 3203)]
    assert [port for port, _public in blocks[4]] == course_ports(DEFAULT)  # every course port, in order
    publics = [public for block in blocks for _port, public in block]
    assert len(publics) == len(set(publics)) == students * 13  # no two students share one
    ssh = set(range(base + 1, base + 101 + 9 + 1))  # students, then swarm-1 … swarm-9 at base + 101
    assert not ssh & set(publics)
    assert min(publics) == base + PUBLISHED_OFFSET + 1


def test_public_ports_start_past_the_ssh_ports_of_every_students_own_nodes():
    from provision.config import ClassroomConfig
    from provision.model import HostSpec, Role

    base, students, nodes = 2200, 30, 3
    config = ClassroomConfig(name="t-ports", students=students, swarm={"nodes": nodes},
                             local={"ssh_port_base": base, "public_host": "127.0.0.1"})
    from provision.backends.local import LocalBackend

    backend = LocalBackend.__new__(LocalBackend)  # port arithmetic only: no engine
    backend.config = config
    specs = [HostSpec(f"student-{i:02d}", Role.STUDENT, f"student-{i:02d}", i) for i in range(1, students + 1)]
    specs += [HostSpec(f"student-{i:02d}-node-{k}", Role.SWARM_WORKER, f"student-{i:02d}", i, node=k)
              for i in range(1, students + 1) for k in range(2, nodes + 1)]
    ssh = {backend.port_of(spec) for spec in specs}
    publics = {public for spec in specs for _port, public in backend.published_of(spec)}
    assert len(ssh) == len(specs) and len(publics) == students * 13
    assert max(ssh) < min(publics)  # student-30-node-3 is 4230; student-01's port 80 is 5201
    assert min(publics) == base + 3000 + 1


def test_the_map_is_the_same_every_time_and_depends_on_the_base_and_the_index():
    assert local_port_map(30000, parse_ports([8080]), 2) == [(8080, 31002)]
    assert local_port_map(30000, parse_ports([8080]), 2) == local_port_map(30000, parse_ports([8080]), 2)
    assert local_port_map(40000, parse_ports([8080]), 2) == [(8080, 41002)]


def test_ports_that_do_not_fit_are_refused_before_anything_is_made():
    assert local_ports_problem(2200, DEFAULT, 200) is None
    assert "past 65535" in local_ports_problem(60000, parse_ports(["8000-8099"]), 50)
    assert "at most 100" in local_ports_problem(2200, parse_ports(["8000-8200"]), 1)
    assert local_ports_problem(60000, [], 200) is None  # no course port: nothing to map


def test_urls_bracket_ipv6_addresses():
    assert url("192.0.2.7", 31001) == "http://192.0.2.7:31001"
    assert url("2001:db8::7", 31001) == "http://[2001:db8::7]:31001"
    assert [p.as_json() for p in urls_of("192.0.2.7", ((8080, 31001),))] == [
        {"port": 8080, "url": "http://192.0.2.7:31001"}]


def test_published_ports_are_read_back_from_the_container_without_sshd():
    bindings = {"22/tcp": [{"HostIp": "127.0.0.1", "HostPort": "30001"}],
                "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "31002"}],
                "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "31001"}], "53/udp": [{"HostPort": "31009"}]}
    assert published_ports(bindings) == ((80, 31001), (8080, 31002))


# --- public_host: this machine's address on its default route ---------------------------------------
ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
tun0\t00000000\t00000000\t0000\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
"""


def test_the_default_route_with_the_lowest_metric_wins_and_routes_that_are_down_do_not_count():
    assert default_route_interface(ROUTES) == "eth0"


def test_no_default_route_is_none():
    only_local = "\n".join(line for line in ROUTES.splitlines() if line.split("\t")[1] != "00000000")
    assert "docker0" in only_local and default_route_interface(only_local) is None
    assert default_route_interface("") is None
    assert default_route_interface("Iface\tDestination\nbroken line\n") is None


def test_an_interface_address_is_read_without_sending_anything():
    assert interface_address("lo") == "127.0.0.1"
    assert interface_address("no-such-if0") is None


def test_default_route_address_reads_the_given_table(tmp_path):
    table = tmp_path / "route"
    table.write_text(ROUTES.replace("eth0", "lo"))
    assert default_route_address(table) == "127.0.0.1"
    assert default_route_address(tmp_path / "missing") is None


def test_public_host_defaults_to_the_default_route_address(monkeypatch):
    import provision.hostaddr

    monkeypatch.setattr(provision.hostaddr, "default_route_address", lambda: "192.0.2.55")
    assert ClassroomConfig().local.address == "192.0.2.55"
    assert ClassroomConfig.model_validate({"local": {"public_host": "10.1.2.3"}}).local.address == "10.1.2.3"
    monkeypatch.setattr(provision.hostaddr, "default_route_address", lambda: None)
    assert ClassroomConfig().local.address == "127.0.0.1"  # no route at all: this machine only


# --- the class's time zone --------------------------------------------------------------------------
def test_zones_are_checked():
    assert check_zone("Europe/Paris") == "Europe/Paris"
    for bad in ("Mars/Olympus", "", "/etc/passwd", "../../etc/passwd", "Europe"):
        with pytest.raises(ValueError, match="is not a time zone like Europe/Paris or UTC"):
            check_zone(bad)


def test_the_machine_zone_comes_from_tz_then_localtime_then_etc_timezone(tmp_path):
    zone_file = tmp_path / "timezone"
    zone_file.write_text("Asia/Tokyo\n")
    localtime = tmp_path / "localtime"
    localtime.symlink_to("/usr/share/zoneinfo/America/Sao_Paulo")
    assert machine_zone({"TZ": "Europe/Paris"}, localtime, zone_file) == "Europe/Paris"
    assert machine_zone({}, localtime, zone_file) == "America/Sao_Paulo"
    assert machine_zone({"TZ": "nonsense"}, tmp_path / "none", zone_file) == "Asia/Tokyo"
    assert machine_zone({}, tmp_path / "none", Path(tmp_path / "none")) == "UTC"


def test_timezone_setting_is_validated():
    assert ClassroomConfig.model_validate({"timezone": "Europe/Paris"}).timezone == "Europe/Paris"
    assert ClassroomConfig().timezone is None


# --- sudo: a student's own host only ----------------------------------------------------------------
def machine(name: str, role: Role, student: str | None) -> Machine:
    return Machine(name, role, student, MachineState.RUNNING, "127.0.0.1", 22, "127.0.0.1", 22)


def test_sudo_only_for_the_hosts_own_student_and_never_on_a_swarm_node():
    assert sudo_arguments(machine("student-01", Role.STUDENT, "student-01"), True) == ("student-01", "sudo")
    assert sudo_arguments(machine("student-01", Role.STUDENT, "student-01"), False) == ("student-01", "nosudo")
    assert sudo_arguments(machine("swarm-1", Role.SWARM_MANAGER, None), True) == ("", "nosudo")
    assert sudo_arguments(machine("swarm-2", Role.SWARM_WORKER, "student-01"), True) == ("", "nosudo")



def test_hosts_listen_on_every_address_only_when_students_reach_them_from_outside(monkeypatch, tmp_path):
    import provision.hostaddr
    from provision.backends.local import LocalBackend
    from provision.state import ClassroomState

    monkeypatch.setattr(provision.hostaddr, "default_route_address", lambda: "192.0.2.55")
    state = ClassroomState("c", tmp_path)
    assert LocalBackend(ClassroomConfig(), state).bind_address == "0.0.0.0"  # the default: the route's address
    loopback = ClassroomConfig.model_validate({"local": {"public_host": "127.0.0.1"}})
    assert LocalBackend(loopback, state).bind_address == "127.0.0.1"
