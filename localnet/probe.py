"""Is a miner's axon or sshd answering? Plain TCP, loopback only."""

import socket


def tcp_open(ip, port, timeout=0.5):
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def ssh_banner(ip, port, timeout=0.5):
    """True when an SSH server greets on ip:port."""
    try:
        with socket.create_connection((ip, port), timeout=timeout) as connection:
            return connection.recv(64).startswith(b"SSH-")
    except OSError:
        return False
