"""Starts a program the way a service manager's socket activation does (systemd's
LISTEN_FDS protocol), for the end-to-end tests.

    socket_activate.py [--tcp NAME=HOST:PORT | --unix NAME=PATH]... -- PROGRAM [ARGUMENT]...

Each socket is bound and listening before PROGRAM starts; they become descriptors 3, 4, … in
the order given, LISTEN_FDS says how many, LISTEN_FDNAMES names them, and LISTEN_PID is this
process's ID, which PROGRAM keeps because this script execs it. A unix socket gets mode 0660, as
``SocketMode=0660`` gives it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys


def open_socket(kind: str, address: str) -> socket.socket:
    if kind == "--tcp":
        host, port = address.rsplit(":", 1)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), int(port)))
    elif kind == "--unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(address)
        os.chmod(address, 0o660)
    else:
        raise SystemExit(f"socket_activate.py: unknown option {kind}")
    sock.listen(64)
    return sock


def main(arguments: list) -> None:
    sockets, names = [], []
    while arguments and arguments[0] != "--":
        if len(arguments) < 2 or "=" not in arguments[1]:
            raise SystemExit("usage: socket_activate.py [--tcp NAME=HOST:PORT | --unix NAME=PATH]... -- PROGRAM ...")
        name, address = arguments[1].split("=", 1)
        sockets.append(open_socket(arguments[0], address))
        names.append(name)
        arguments = arguments[2:]
    program = arguments[1:]
    if not program:
        raise SystemExit("socket_activate.py: no program after --")
    # Out of the way first, so that moving one socket to 3, 4, … never closes another.
    parked = [fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD, 100) for sock in sockets]
    for sock in sockets:
        sock.close()
    for index, descriptor in enumerate(parked):
        os.dup2(descriptor, 3 + index, inheritable=True)
        os.close(descriptor)
    environment = dict(os.environ)
    environment.update(
        LISTEN_FDS=str(len(parked)), LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=":".join(names)
    )
    os.execve(program[0], program, environment)


if __name__ == "__main__":
    main(sys.argv[1:])
