# Run as root. $1 the folder where the host keeps the course's exercises (manifest, tree/, stamps/),
# $2 user, $3 the uploaded tar (or "" to reuse the host's copy), $4 mode: "sync" (a re-run: keep
# the student's edits) or "fresh" (reset: exactly the course). stdin: the manifest.
# Prints one line per change: added/updated/kept/deleted PATH.
# A new version is unpacked once into tree/ (root only) and the tar deleted: later resets copy
# from there, which costs one copy of each file rather than unpacking the whole course again.
set -eu
S=$1; U=$2; UPLOAD=$3; MODE=$4
H=$(getent passwd "$U" | cut -d: -f6)
T="$H/exercises"
mkdir -p "$S"; chmod 755 "$(dirname "$S")" "$S"
cat > "$S/manifest.new"
if [ -n "$UPLOAD" ]; then
  rm -rf "$S/tree.new"; mkdir -m 700 "$S/tree.new"
  tar -xf "$UPLOAD" -C "$S/tree.new" --same-permissions --no-same-owner
  rm -rf "$UPLOAD" "$S/tree" "$S/course.tar" "$S/stage"; mv "$S/tree.new" "$S/tree"
fi
[ -d "$S/tree" ] || { echo "this host has no copy of the course's exercises" >&2; exit 1; }
if [ "$MODE" = fresh ]; then rm -rf "$T" && rm -f "$S/manifest"; fi
[ -f "$S/manifest" ] || : > "$S/manifest"
mkdir -p "$S/stamps"; P="$S/stamps/$U"; : > "$P.new"
stamp() { printf '%s\t%s\n' "$1" "$(find "$2" -maxdepth 0 -printf '%s %T@')" >> "$P.new"; }
if [ ! -d "$T" ]; then install -d -o "$U" -g "$U" -m 0755 "$T"; fi
TAB=$(printf '\t')
while IFS="$TAB" read -r kind mode sum path; do
  dst="$T/$path"
  if [ "$kind" = d ]; then
    if [ ! -d "$dst" ]; then mkdir -p "$dst"; chmod "$mode" "$dst"; chown "$U:$U" "$dst"; fi
    continue
  fi
  old=$(awk -F"$TAB" -v p="$path" '$4 == p { print $3 }' "$S/manifest")
  if [ -e "$dst" ] || [ -L "$dst" ]; then
    now=$(sha256sum < "$dst" | cut -c1-64)
    if [ "$now" = "$sum" ]; then stamp "$path" "$dst"; continue; fi
    if [ -n "$old" ] && [ "$now" != "$old" ]; then echo "kept $path"; continue; fi
    verb=updated
  else
    if [ -n "$old" ]; then echo "deleted $path"; continue; fi
    verb=added
  fi
  mkdir -p "$(dirname "$dst")"
  cp -p "$S/tree/$path" "$dst.classroom-new"; chown "$U:$U" "$dst.classroom-new"
  mv -f "$dst.classroom-new" "$dst"
  stamp "$path" "$dst"
  echo "$verb $path"
done < "$S/manifest.new"
mv "$S/manifest.new" "$S/manifest"; chmod 644 "$S/manifest"
chmod 644 "$P.new"; mv "$P.new" "$P"
