#!/usr/bin/env bash
# The example course (examples/docker-intro) as a 3-student classroom on this machine's Docker.
#
#   bash scripts/demo.sh
#
# Sets up like scripts/test.sh (Docker engine, base image, .venv), then runs
#   classroom -f examples/docker-intro/classroom.yaml up --students 3 --yes
# and says how to look at it and how to tear it down. Running it again converges: nothing changes.
# DEMO_FILE=path/to/classroom.yaml runs another classroom file instead.
set -euo pipefail

cd "$(dirname "$0")/.."
log() { printf '[demo] %s\n' "$*" >&2; }

bash scripts/test.sh --setup-only

file=${DEMO_FILE:-examples/docker-intro/classroom.yaml}
classroom=.venv/bin/classroom

# The course's images are preloaded from this engine. Where no registry answers (an offline
# machine, our CI), run with the images this engine already has and say which are left out.
run_file=$file
missing=()
while IFS= read -r image; do
  [ -n "$image" ] || continue
  if docker image inspect "$image" >/dev/null 2>&1; then continue; fi
  log "pulling $image"
  timeout 300 docker pull -q "$image" >/dev/null 2>&1 || missing+=("$image")
done < <(.venv/bin/python - "$file" <<'PY'
import sys, yaml
data = yaml.safe_load(open(sys.argv[1])) or {}
for image in data.get("images") or []:
    if isinstance(image, str):
        print(image)
    elif isinstance(image, dict) and not image.get("build"):
        print(image.get("name", ""))
PY
)
if [ ${#missing[@]} -gt 0 ]; then
  log "no registry gives these course images, and this engine does not have them: ${missing[*]}"
  log "the demo runs without preloading them (the sheets will not list them)"
  run_file=$(mktemp -d "${TMPDIR:-/tmp}/classroom-demo.XXXXXX")/classroom.yaml
  .venv/bin/python - "$file" "$run_file" "${missing[@]}" <<'PY'
import sys, yaml
from pathlib import Path
source, target, missing = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), set(sys.argv[3:])
data = yaml.safe_load(source.read_text()) or {}
keep = lambda i: (i if isinstance(i, str) else i.get("name")) not in missing
data["images"] = [i for i in data.get("images") or [] if keep(i)]
for image in data["images"]:  # paths in the file are relative to it: keep them pointing there
    if isinstance(image, dict) and image.get("build"):
        image["build"] = str((source.parent / image["build"]).resolve())
if data.get("exercises"):
    data["exercises"] = str((source.parent / data["exercises"]).resolve())
target.write_text(f"# {source} without the images that cannot be had offline\n"
                  + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
PY
fi

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
  ssh -p PORT student-01@127.0.0.1   # log in as a student (PORT and password: see roster)
  classroom -f $run_file down --yes  # remove everything, then check that nothing is left
NEXT
exit $code
