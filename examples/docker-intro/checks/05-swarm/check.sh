# Done: the chapter's service runs on the student's cluster (`docker service create ... --name
# $USER-web`). Not "a Swarm is active": their own cluster is formed before class, so that is always
# true. The chapter's last step removes the service, and the cell says "not done" again then.
docker service ls --format '{{.Name}}' 2>/dev/null | grep -qx "$(id -un)-web"
