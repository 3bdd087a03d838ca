"""The classroom's Docker Swarm cluster: formed, repaired and inspected over SSH.

- `planner`: pure. The observed cluster (our nodes in order, each node's own view, each manager's
  node list) -> the actions that converge it (`plan`) or hand a manager's role over before a
  `reset --hard` (`plan_release`). Its docstring lists the rules.
- `session`: SSH to each node: observes it into the planner's model, runs manager commands with
  retries, waits for Ready, scrubs join tokens from every text.
- `driver`: carries the plans out (`converge_swarm`, `release_nodes`); join tokens only on stdin.
- `status`: what `classroom status` shows.
- `layout`: pure. Which machines form which cluster (one shared, or one per student).

Networking, as measured on the local backend (Docker-in-Docker, Debian's 20.10): overlay
networks work across nodes (VXLAN), and so do DNS round-robin (`endpoint_mode: dnsrr`) and
`--publish mode=host`; the ingress routing mesh and service VIPs do not, for the kernel there
has no IPVS (no ip_vs module in this VM's kernel). Cloud hosts (EC2, stock kernels) have IPVS.
"""

from .driver import converge_swarm, release_node, release_nodes
from .layout import SwarmLayout, is_swarm_node, swarm_clusters
from .planner import desired_manager_count
from .report import SwarmNodeReport, SwarmReport
from .session import SwarmError, swarm_machines
from .status import SwarmNodeStatus, SwarmStatus, swarm_status

__all__ = ["SwarmError", "SwarmLayout", "SwarmNodeReport", "SwarmNodeStatus", "SwarmReport", "SwarmStatus",
           "converge_swarm", "desired_manager_count", "is_swarm_node", "release_node", "release_nodes",
           "swarm_clusters", "swarm_machines", "swarm_status"]
