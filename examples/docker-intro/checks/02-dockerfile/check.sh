# Done: the second version of the image was built.
docker image inspect web:1.1.0 >/dev/null 2>&1
