"""The launcher of one ``bash`` command, a standalone script (it imports nothing of sessionlsp):
``python -I -S bash_launcher.py STATUS_FD PARENT_PID COMMAND``.

It runs ``/bin/sh -c COMMAND`` in its own process group (the group :mod:`server.tools.bash`
started it in) and writes how the shell ended to ``STATUS_FD``: ``exit N`` or ``signal N``.
That line is the only exact account: the shell's parent inside the sandbox, bwrap, reports a
signal as exit status 128+N, which a command can also ``exit`` with.

Its second job is the server's death. When ``PARENT_PID`` is not 0 (no sandbox), the launcher
asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), and answers SIGTERM by
SIGKILLing its whole process group, itself included: the shell and whatever it put in the
background. A death signal on the shell alone would leave those children running, since the
setting is not inherited across fork. (In the sandbox, bwrap's ``--die-with-parent`` and its
PID namespace do this.)
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def _kill_group(*_: object) -> None:
    os.killpg(0, signal.SIGKILL)


def main() -> None:
    status_fd, parent, command = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    os.set_inheritable(status_fd, False)  # the shell's children must not hold it open
    signal.signal(signal.SIGTERM, _kill_group)
    if parent:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # it died before the request above
            _kill_group()
    pid = os.posix_spawn(
        "/bin/sh",
        ["/bin/sh", "-c", command],
        os.environ,
        # Python ignores SIGPIPE, and an ignored signal stays ignored across exec: the shell
        # must see the defaults (``yes | head -1`` ends by SIGPIPE).
        setsigdef=(signal.SIGPIPE, signal.SIGTERM, signal.SIGXFSZ),
    )
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            status = 0
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
    if os.WIFSIGNALED(status):
        line = f"signal {os.WTERMSIG(status)}\n"
    else:
        line = f"exit {os.waitstatus_to_exitcode(status)}\n"
    try:
        os.write(status_fd, line.encode("ascii"))
        os.close(status_fd)
    except OSError:
        pass
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
