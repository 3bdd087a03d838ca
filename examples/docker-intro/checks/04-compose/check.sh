# Done: Compose built the vote image and made the redis volume (kept after `docker-compose down`).
docker volume ls --format '{{.Name}}' | grep -q '_db-data$' \
  && docker image ls --format '{{.Repository}}' | grep -q '_vote$'
