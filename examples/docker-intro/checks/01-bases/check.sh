# Done: the site of the "Volumes" part exists and a container served it (web-3, running or not).
test -s "$HOME/site/index.html" && docker container inspect web-3 >/dev/null 2>&1
