#!/usr/bin/env python3
"""A UDP echo for the lab's protected namespace: every datagram goes back
to its sender unchanged (esprit-pktgen's stamps included)."""
import socket
import sys

addr, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind((addr, port))
while True:
    data, peer = s.recvfrom(65535)
    try:
        s.sendto(data, peer)
    except OSError:
        pass
