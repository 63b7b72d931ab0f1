# -*- coding: utf-8 -*-
# Loopback addresses for tests that serve real axons: a free port, and waiting until one listens.

from __future__ import annotations

import socket
import time


def free_port(ip):
    with socket.socket() as probe:
        probe.bind((ip, 0))
        return probe.getsockname()[1]


def wait_listening(ip, port, deadline=10.0):
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        with socket.socket() as probe:
            if probe.connect_ex((ip, port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("axon %s:%d did not start" % (ip, port))
