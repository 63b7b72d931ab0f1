"""ssh ProxyCommand for the tests: relay stdin/stdout to HOST:PORT unless STOP_PATH exists.

    relay.py STOP_PATH HOST PORT

With STOP_PATH set to a directory the playbook creates on the box, the box answers until the
playbook has created it and is unreachable from then on.
"""

import os
import selectors
import socket
import sys


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def main(stop_path, host, port):
    if os.path.exists(stop_path):
        sys.stderr.write("relay: %s exists, refusing to connect\n" % stop_path)
        return 1
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.settimeout(None)
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ)
    selector.register(sock, selectors.EVENT_READ)
    while True:
        for key, dummy in selector.select():
            if key.fileobj is sock:
                data = sock.recv(65536)
                if not data:
                    return 0
                write_all(sys.stdout.fileno(), data)
            else:
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fd)
                    sock.shutdown(socket.SHUT_WR)
                    continue
                sock.sendall(data)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
