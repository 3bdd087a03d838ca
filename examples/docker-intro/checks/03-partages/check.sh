# Done: the user-defined network and the named volume of the chapter exist.
docker network inspect db-net-1 >/dev/null 2>&1 && docker volume inspect shared-data >/dev/null 2>&1
