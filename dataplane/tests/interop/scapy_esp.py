#!/usr/bin/env python3
"""Independent check of esprit's ESP: scapy's SecurityAssociation decrypts
what esprit sealed, and seals packets for esprit to open.

Input (JSON on stdin): key, salt, spi, esn and a list of esprit-sealed
packets, each {"seq": full 64-bit seq, "esp": hex, "inner": hex}.
Output (JSON on stdout): {"checked": N, "sealed": [{"seq", "esp", "inner"}]}.
Exits non-zero with a message on the first mismatch.
"""
import json
import sys

from scapy.all import IP, UDP, Raw
from scapy.layers.ipsec import ESP, SecurityAssociation


def sa_for(cfg, high):
    return SecurityAssociation(
        ESP,
        spi=cfg["spi"],
        crypt_algo="AES-GCM",
        crypt_key=bytes.fromhex(cfg["key"]) + bytes.fromhex(cfg["salt"]),
        crypt_icv_size=16,
        esn_en=cfg["esn"],
        esn=high,
        # Tunnel mode: the whole inner IP packet is the ESP payload.
        tunnel_header=IP(src="192.0.2.1", dst="192.0.2.2"),
    )


def main():
    cfg = json.load(sys.stdin)
    checked = 0
    for p in cfg["packets"]:
        seq = p["seq"]
        outer = IP(src="192.0.2.1", dst="192.0.2.2", proto=50) / Raw(bytes.fromhex(p["esp"]))
        outer = IP(bytes(outer))
        clear = sa_for(cfg, seq >> 32).decrypt(outer)
        if bytes(clear) != bytes.fromhex(p["inner"]):
            sys.exit(f"scapy decrypted seq {seq} to something else: {bytes(clear).hex()}")
        checked += 1

    sealed = []
    # Near the wrap step by step: a receiver infers the high half from its window.
    for i, seq in enumerate([1, 2, 77, (1 << 32) - 2, (1 << 32) + 5]):
        inner = IP(src="10.2.0.5", dst="10.1.0.9") / UDP(sport=1000 + i, dport=2000) / Raw(b"from scapy %d" % i)
        inner = IP(bytes(inner))
        sa = sa_for(cfg, seq >> 32)
        enc = sa.encrypt(inner, seq_num=seq & 0xFFFFFFFF)
        esp = bytes(enc[ESP])
        sealed.append({"seq": seq, "esp": esp.hex(), "inner": bytes(inner).hex()})
    json.dump({"checked": checked, "sealed": sealed}, sys.stdout)


if __name__ == "__main__":
    main()
