# Run as root by `status` and after `up`: one session per host answers every check.
# $1 the student's part (status_student.sh), $2 the engine's image listing (engine_images.sh),
# $3 the course's images file or "" (no images), $4 the host's exercises folder or "" (no
# exercises), $5 the user the student's part runs as or "" (none), then the accounts to check.
# Prints, per account: `shadow USER HASH` (compared with the sheet's on the trainer's side: the
# host never sees the sheet) and `login USER WHY`, WHY being `ok` or the first thing that stops a
# password login: `expired` (the account's expiry date passed), `shell` (no valid login shell),
# `nologin` (/etc/nologin exists), `sshd` (sshd does not take passwords). Then the student's part.
# Nothing here reads a file a student controls as root, and no secret travels.
STUDENT=$1; LISTER=$2; IMAGES=$3; EXERCISES=$4; CHECK_USER=$5
shift 5
today=$(( $(date +%s) / 86400 ))
sshd_passwords=no
if "$(command -v sshd || echo /usr/sbin/sshd)" -T 2>/dev/null | grep -qx 'passwordauthentication yes'; then
  sshd_passwords=yes
fi
for user in "$@"; do
  entry=$(getent shadow "$user")
  printf 'shadow %s %s\n' "$user" "$(printf '%s' "$entry" | cut -d: -f2)"
  expires=$(printf '%s' "$entry" | cut -d: -f8)
  shell=$(getent passwd "$user" | cut -d: -f7)
  if [ -n "$expires" ] && [ "$expires" -le "$today" ]; then why=expired
  elif [ -z "$shell" ] || [ ! -x "$shell" ] || ! grep -qxF "$shell" /etc/shells; then why=shell
  elif [ -e /etc/nologin ]; then why=nologin
  elif [ "$sshd_passwords" != yes ]; then why=sshd
  else why=ok; fi
  printf 'login %s %s\n' "$user" "$why"
done
if [ -n "$CHECK_USER" ]; then
  H=$(getent passwd "$CHECK_USER" | cut -d: -f6)
  # runuser, not su or ssh: no login shell, so none of the student's start-up files runs
  # (~/.profile, ~/.bashrc); env -i: nothing inherited either; </dev/null: nothing of the session.
  [ -n "$H" ] && runuser -u "$CHECK_USER" -- env -i HOME="$H" USER="$CHECK_USER" LOGNAME="$CHECK_USER" \
    PATH=/usr/local/bin:/usr/bin:/bin sh -c "$STUDENT" check "$IMAGES" "$EXERCISES" "$LISTER" </dev/null 2>/dev/null
fi
exit 0
