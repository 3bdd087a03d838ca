# Run as root by `progress`: one course check (its text on stdin) as student $1, for at most
# $2 seconds. The check's exit code is this script's: 0 means the exercise is done.
# runuser with an empty environment, as status_host.sh does: none of the student's start-up
# files runs. The check runs in the student's home, as the student: it can read what they can,
# and change nothing they could not. 125: no such account.
CHECK_USER=$1; LIMIT=$2
H=$(getent passwd "$CHECK_USER" | cut -d: -f6)
[ -n "$H" ] && cd "$H" || exit 125
exec timeout "$LIMIT" runuser -u "$CHECK_USER" -- env -i HOME="$H" USER="$CHECK_USER" LOGNAME="$CHECK_USER" \
  PATH=/usr/local/bin:/usr/bin:/bin sh -s >/dev/null 2>&1
