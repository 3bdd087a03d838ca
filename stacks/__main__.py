"""Entry point for the plain Pulumi CLI: `pulumi up` from the repository root (Pulumi.yaml).

Configuration, in the stack (`pulumi config set KEY VALUE`):
  aws:region                  e.g. eu-west-3
  classroom:adminPublicKey    required: the OpenSSH public key the tool logs in with as root
  classroom:hosts             a JSON list of {"name", "role", "student"}; or, instead:
  classroom:students          number of student hosts (default 3)
  classroom:swarmNodes        number of Swarm nodes (default 0), classroom:swarmManagers (1),
                              classroom:swarmMode (per-student | shared)
  classroom:expiresAt         ISO time (UTC) when hosts power off; or classroom:ttl (default 8h)
  classroom:instanceType      default t3.small
  classroom:allowedCidr       default 0.0.0.0/0
  classroom:registryMirror, classroom:ami, classroom:availabilityZone, classroom:diskGb (20)
  classroom:ports             what students publish, e.g. 80,5000,8000-8010 (the default); 22 is always open
  classroom:ephemeralPorts    true to open `docker run -P`'s range 32768-60999 (default false)
  classroom:replacing         hosts being replaced (comma-separated): they get the current user-data and AMI
  classroom:hostKeys          secret (`pulumi config set --secret`): {"host": {"private", "public"}}, the
                              hosts' own SSH keys; without it hosts make their own

`classroom up --backend aws` sets the same keys through the Automation API.
"""

import sys
from pathlib import Path

# Pulumi runs this folder as a script: make the repository root importable (`stacks`, templates).
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from stacks.classroom_stack import main

main()
