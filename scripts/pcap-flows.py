#!/usr/bin/env python3
"""Per-direction summary of the TCP connection(s) to one port in a pcap file
(as tcpdump -w writes it): segments carrying data, payload bytes, TLS
records by content type (from the reassembled byte stream), and whether a
FIN was sent. Used by wire-capture.sh; standard library only.

Usage: pcap-flows.py FILE PORT
Prints two lines, "client" then "server":
  <side> segments=<n> bytes=<n> records=<type>:<n>,... fin=<0|1>
"""
import struct
import sys


def packets(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        sys.exit(f"{path}: not a pcap file")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    at = 24
    while at + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[at + 8 : at + 12])[0]
        frame = data[at + 16 : at + 16 + incl]
        at += 16 + incl
        if linktype == 1:  # Ethernet (Linux lo)
            if frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
        elif linktype == 113:  # Linux cooked
            ip = frame[16:]
        elif linktype == 276:  # Linux cooked v2
            ip = frame[20:]
        elif linktype == 0:  # BSD loopback
            ip = frame[4:]
        elif linktype in (12, 101):  # raw IP
            ip = frame
        else:
            sys.exit(f"{path}: link type {linktype} not handled")
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 15) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        tcp = ip[ihl:total]
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        offset = (tcp[12] >> 4) * 4
        flags = tcp[13]
        yield sport, dport, seq, flags, tcp[offset:]


def records(stream):
    counts = {}
    at = 0
    while at + 5 <= len(stream):
        kind = stream[at]
        length = struct.unpack(">H", stream[at + 3 : at + 5])[0]
        counts[kind] = counts.get(kind, 0) + 1
        at += 5 + length
    return counts


def main():
    path, port = sys.argv[1], int(sys.argv[2])
    sides = {
        name: {"segments": 0, "bytes": 0, "fin": 0, "seen": set(), "stream": bytearray()}
        for name in ("client", "server")
    }
    for sport, dport, seq, flags, payload in packets(path):
        if dport == port:
            side = sides["client"]
        elif sport == port:
            side = sides["server"]
        else:
            continue
        if flags & 1:
            side["fin"] = 1
        if payload and seq not in side["seen"]:  # a retransmission counts once
            side["seen"].add(seq)
            side["segments"] += 1
            side["bytes"] += len(payload)
            side["stream"] += payload
    for name in ("client", "server"):
        side = sides[name]
        kinds = ",".join(f"{k}:{n}" for k, n in sorted(records(side["stream"]).items()))
        print(f"{name} segments={side['segments']} bytes={side['bytes']} records={kinds or '-'} fin={side['fin']}")


main()
