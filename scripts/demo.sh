#!/usr/bin/env bash
# The example course (examples/docker-intro) as a 3-student classroom on this machine's Docker.
#
#   bash scripts/demo.sh
#
# Sets up like scripts/test.sh (Docker engine, base image, .venv), then runs
#   classroom -f examples/docker-intro/classroom.offline.yaml up --students 3 --yes
# and says how to look at it and how to tear it down. Running it again converges: nothing changes.
# DEMO_FILE=path/to/classroom.yaml runs another classroom file instead.
set -euo pipefail

cd "$(dirname "$0")/.."
log() { printf '[demo] %s\n' "$*" >&2; }

bash scripts/test.sh --setup-only

# The offline variant of the example course: every image is built here (FROM the base image,
# which is preloaded too), no registry needed.
file=${DEMO_FILE:-examples/docker-intro/classroom.offline.yaml}
classroom=.venv/bin/classroom
run_file=$file

set +e
"$classroom" -f "$run_file" up --students 3 --yes
code=$?
set -e

cat <<NEXT

What next (from $(pwd)):
  . .venv/bin/activate                                 # puts \`classroom\` on your PATH
  classroom -f $run_file status    # one row per host, with live checks
  classroom -f $run_file roster    # who logs in where, with which password
  classroom -f $run_file sheets    # render the access sheets again
  classroom -f $run_file rehearse  # every chapter's solution, as a student, on a scratch host
  ssh -p PORT student-01@127.0.0.1   # log in as a student (PORT and password: see roster)
  classroom -f $run_file down --yes  # remove everything, then check that nothing is left
NEXT
exit $code
