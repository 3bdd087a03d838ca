# Done: a Swarm runs on the student's own host (`docker swarm init`, before `leave`).
docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null | grep -qx active
