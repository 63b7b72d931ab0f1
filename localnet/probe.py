"""Is a miner's axon or sshd listening? Plain TCP, loopback only."""

import socket
import struct


def tcp_open(ip, port, timeout=0.5):
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


LISTEN = "0A"  # the TCP state in /proc/net/tcp


def listening():
    """{(ip, port)} of the IPv4 TCP sockets that listen, from one read of the kernel's table: what
    connecting to each address would tell, without a connection (an sshd forks for every one)."""
    found = set()
    with open("/proc/net/tcp") as handle:
        next(handle)  # the header line
        for line in handle:
            fields = line.split()
            if fields[3] == LISTEN:
                address, port = fields[1].split(":")
                # The kernel prints the address as a native-endian 32-bit number.
                found.add((socket.inet_ntoa(struct.pack("=I", int(address, 16))), int(port, 16)))
    return found
