#!/bin/sh
# tracebox's supervisor: the container's command, under docker-init.
#
#   supervise.sh MARKER BACKSTOP_SECS RUNNER [ARGS...]
#
# 1. Runs the runner (which reads the program from stdin and runs it) under a backstop timeout,
#    in case tracebox is not there to kill the container at the run's own timeout.
# 2. Kills whatever the program left running: every other process of this user.
# 3. Writes "\0TRACEBOX-END MARKER STATUS\n" on stdout, so that tracebox knows the program
#    ended and how, then a tar of /workspace/out (when the program made it): its artifacts.
#    MARKER is random per container, so no program's own output is taken for the end by chance;
#    a program that forges it spoils only its own result.
# 4. Exits with the program's status.
#
# It adds nothing user code could not do itself: it runs as the same unprivileged user, inside
# the same limits, and it never reads stdin (which is the program's).
set -u
marker=$1
backstop=$2
shift 2

/usr/bin/timeout --signal=KILL "$backstop" "$@"
status=$?

kill -KILL -1 2>/dev/null
printf '\0TRACEBOX-END %s %d\n' "$marker" "$status"
if [ -d /workspace/out ] && [ ! -L /workspace/out ]; then
  # Files the program made unreadable to itself would be skipped by tar without a word.
  chmod -R u+rX /workspace/out 2>/dev/null
  # Plain ustar (paths up to 256 bytes, no extension headers): tracebox refuses any other kind
  # of entry. Symlinks are archived as links, never followed; tracebox keeps regular files only.
  /usr/bin/timeout --signal=KILL 10 /usr/bin/tar --create --file=- --format=ustar --sort=name \
    --numeric-owner --directory=/workspace out 2>/dev/null
fi
exit "$status"
