# Run as the student, by status_host.sh. $1 the course's images file or "" (no images),
# $2 the host's exercises folder or "" (no exercises), $3 the engine's image listing (engine_images.sh).
# Prints `whoami USER`, `docker OK|-`, `images PRESENT BAD`, `exercises PRESENT CHANGED MISSING`.
echo "whoami $(id -un)"
# One listing both proves that the engine answers the student and gives the images to compare.
if have=$(sh -c "$3" engine_images.sh 2>/dev/null); then
  echo "docker ok"
else
  echo "docker -"
fi
if [ -n "$1" ]; then
  if [ -f "$1" ]; then
    bad=0
    while read -r name id; do
      if [ "$id" = "-" ]; then printf '%s\n' "$have" | grep -q "^$name " || bad=$((bad + 1))
      else printf '%s\n' "$have" | grep -qxF "$name $id" || bad=$((bad + 1)); fi
    done < "$1"
    echo "images 1 $bad"
  else
    echo "images 0 0"
  fi
fi
[ -n "$2" ] || exit 0
# The exercises against the manifest. A file whose size and mtime are still those the copy stamped
# is not hashed again: with a 1.5 GB course file, hashing it was most of a reset's time. (A student
# who sets an edited file's mtime back only hides the edit from this count.)
M=$2/manifest; P=$2/stamps/$(id -un)
if [ ! -f "$M" ] || [ ! -d "$HOME/exercises" ]; then echo "exercises 0 0 0"; exit 0; fi
[ -f "$P" ] || P=/dev/null
changed=0; missing=0; TAB=$(printf '\t')
while IFS="$TAB" read -r kind _mode sum path; do
  [ "$kind" = f ] || continue
  f="$HOME/exercises/$path"
  if [ ! -f "$f" ]; then missing=$((missing + 1))
  elif grep -qxF -e "$path$TAB$(find "$f" -maxdepth 0 -printf '%s %T@')" "$P"; then :
  elif [ "$(sha256sum < "$f" | cut -c1-64)" != "$sum" ]; then changed=$((changed + 1)); fi
done < "$M"
echo "exercises 1 $changed $missing"
